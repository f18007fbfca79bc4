"""Ray Data graphs for inference: batch prediction with a registered model, and its evaluation on labelled rows.

The model is loaded once per actor (`map_batches` with a callable class), not once per batch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


from pipelines.ingest import Source, read_source
from resmm.data.batch import label_name
from resmm.data.split import select_split
from resmm.train.metrics import classification_metrics
from resmm.train.robustness import pattern_name, presence_patterns

MODALITY_COLUMNS = ("image", "text", "audio")


def _load(model_uri: str, tracking_uri: str):
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


def contract_frame(batch: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns as plain Python objects (bytes, str, None): Ray Data's pandas batches carry
    Arrow-backed dtypes (binary[pyarrow]) that MLflow's schema enforcement cannot convert."""
    columns = [c for c in ("sample_id", *MODALITY_COLUMNS) if c in batch.columns]
    return pd.DataFrame(
        {c: pd.Series([None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
                       for v in batch[c].tolist()], dtype=object) for c in columns}
    )


class PyfuncPredictor:
    """map_batches actor: contract rows in, sample_id + predicted_label + prob_<class> out (one row per row)."""

    def __init__(self, model_uri: str, tracking_uri: str):
        self.model = _load(model_uri, tracking_uri)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        predictions = self.model.predict(contract_frame(batch)).reset_index(drop=True)
        return pd.concat([batch[["sample_id"]].reset_index(drop=True), predictions], axis=1)


class PatternEvaluator:
    """map_batches actor: for each presence pattern of the model's modalities, the predicted label of every row
    with the other modalities hidden. Output columns: label, pred:<pattern>."""

    def __init__(self, model_uri: str, tracking_uri: str):
        self.model = _load(model_uri, tracking_uri)
        spec = self.model.unwrap_python_model().spec
        self.modalities = list(spec.modalities)
        self.patterns = presence_patterns(self.modalities)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame({"label": [label_name(v) for v in batch["label"]]})
        for pattern in self.patterns:
            masked = contract_frame(batch)
            for m in self.modalities:
                if m not in pattern and m in masked.columns:
                    masked[m] = None
            out[f"pred:{pattern_name(pattern)}"] = self.model.predict(masked)["predicted_label"].to_numpy()
        return out


def predict_source(source: Source, model_uri: str, tracking_uri: str, *, concurrency: int, batch_rows: int):
    """Lazy Dataset of predictions, one output row per input row."""
    columns = [c for c in ("sample_id", *MODALITY_COLUMNS) if all(c in s.schema.names for s in source.shards)]
    return read_source(source, columns).map_batches(
        PyfuncPredictor,
        fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri},
        batch_format="pandas",
        batch_size=batch_rows,
        concurrency=concurrency,
    )


def evaluate_model(
    model_uri: str, tracking_uri: str, source: Source, *, validation: bool | None, val_fraction: float,
    concurrency: int = 1, batch_rows: int = 256,
) -> dict:
    """Balanced accuracy, accuracy and robustness (accuracy per presence pattern and their mean) of a registered
    model on labelled rows: a separate eval location (validation=None) or one side of the hash split."""
    columns = [c for c in ("sample_id", "label", *MODALITY_COLUMNS) if all(c in s.schema.names for s in source.shards)]
    dataset = read_source(source, columns)
    if validation is not None:
        dataset = dataset.map_batches(
            select_split, batch_format="pyarrow", fn_kwargs={"validation": validation, "val_fraction": val_fraction}
        )
    predictions = dataset.map_batches(
        PatternEvaluator,
        fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri},
        batch_format="pandas",
        batch_size=batch_rows,
        concurrency=concurrency,
    )
    frames = list(predictions.iter_batches(batch_format="pandas"))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    table = table[table["label"].notna()] if len(table) else table
    if table.empty:
        return {"rows": 0}
    classes = sorted(set(table["label"]) | {v for c in table.columns if c.startswith("pred:") for v in table[c]})
    index = {name: i for i, name in enumerate(classes)}
    y_true = table["label"].map(index).to_numpy()
    pattern_columns = [c for c in table.columns if c.startswith("pred:")]
    per_pattern = {
        c.removeprefix("pred:"): classification_metrics(y_true, table[c].map(index).to_numpy(), len(classes), "")
        for c in pattern_columns
    }
    full = per_pattern[pattern_columns[0].removeprefix("pred:")]  # the first pattern holds every modality
    return {
        "rows": int(len(table)),
        "balanced_accuracy": full["balanced_accuracy"],
        "accuracy": full["accuracy"],
        "patterns": {k: v["accuracy"] for k, v in per_pattern.items()},
        "robustness": float(np.mean([v["accuracy"] for v in per_pattern.values()])),
    }


__all__ = ["predict_source", "evaluate_model", "PyfuncPredictor", "PatternEvaluator"]
