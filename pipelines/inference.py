"""Ray Data graphs for inference: batch prediction with a registered model, and its evaluation on labelled rows.

The model is loaded once per actor (`map_batches` with a callable class, see pipelines/model_actors.py),
not once per batch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


from pipelines.ingest import Source, read_source
from pipelines.model_actors import PatternEvaluator, PyfuncPredictor
from resmm.modalities import MODALITIES
from resmm.train.metrics import classification_metrics


def predict_source(source: Source, model_uri: str, tracking_uri: str, *, concurrency: int, batch_rows: int):
    """Lazy Dataset of predictions, one output row per input row."""
    return read_source(source, ["sample_id", *MODALITIES]).map_batches(
        PyfuncPredictor,
        fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri},
        batch_format="pandas",
        batch_size=batch_rows,
        concurrency=concurrency,
    )


def evaluate_model(
    model_uri: str, tracking_uri: str, source: Source, *, validation: bool | None, val_fraction: float,
    group_column: str | None = None, concurrency: int = 1, batch_rows: int = 256,
) -> dict:
    """Balanced accuracy, accuracy and robustness (accuracy per presence pattern and their mean) of a registered
    model on labelled rows: a separate eval location (validation=None) or one side of the hash split (by group,
    else sample_id, as training splits)."""
    group = [group_column] if group_column and validation is not None else []
    predictions = read_source(source, ["sample_id", "label", *MODALITIES, *group]).map_batches(
        PatternEvaluator,
        fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri, "validation": validation,
                               "val_fraction": val_fraction, "group_column": group_column},
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


__all__ = ["predict_source", "evaluate_model"]
