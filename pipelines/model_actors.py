"""Ray Data actors that hold a registered model: batch prediction and per-pattern evaluation.

This module imports nothing from resmm at import time. MLflow puts a model's bundled code first on sys.path
when it loads the model, but a module that is already imported stays as it is: importing resmm before loading
would make an older champion run with this process's (possibly incompatible) resmm.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _load(model_uri: str, tracking_uri: str):
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


def contract_frame(batch: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns as plain Python objects (bytes, str, None): Ray Data's pandas batches carry
    Arrow-backed dtypes (binary[pyarrow]) that MLflow's schema enforcement cannot convert."""
    columns = [c for c in batch.columns if c != "label"]  # what the driver read: sample_id and the modalities
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
    (optionally of one side of the sample_id split) with the other modalities hidden.
    Output columns: label, pred:<pattern>."""

    def __init__(self, model_uri: str, tracking_uri: str, validation: bool | None = None, val_fraction: float = 0.1):
        self.model = _load(model_uri, tracking_uri)
        # Imported only now: the model's bundled resmm (first on sys.path after loading) is the one in use.
        from resmm.data.batch import label_name
        from resmm.data.split import is_validation
        from resmm.train.robustness import pattern_name, presence_patterns

        self.label_name, self.pattern_name, self.is_validation = label_name, pattern_name, is_validation
        self.validation, self.val_fraction = validation, val_fraction
        spec = self.model.unwrap_python_model().spec
        self.modalities = list(spec.modalities)
        self.patterns = presence_patterns(self.modalities)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.validation is not None:  # one side of the hash split, done here to keep resmm out of fused stages
            in_val = self.is_validation(batch["sample_id"].tolist(), self.val_fraction)
            batch = batch[in_val if self.validation else ~in_val].reset_index(drop=True)
        out = pd.DataFrame({"label": [self.label_name(v) for v in batch["label"]]})
        for pattern in self.patterns:
            masked = contract_frame(batch)
            for m in self.modalities:
                if m not in pattern and m in masked.columns:
                    masked[m] = None
            out[f"pred:{self.pattern_name(pattern)}"] = self.model.predict(masked)["predicted_label"].to_numpy()
        return out
