"""Ray Data actors that hold a registered model: batch prediction and per-pattern evaluation.

This module imports nothing from resmm at import time. MLflow puts a model's bundled code first on sys.path
when it loads the model, but a module that is already imported stays as it is: importing resmm before loading
would make an older champion run with this process's (possibly incompatible) resmm.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa


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


def job_split():
    """This job's resmm/data/split.py, loaded apart from the resmm package (and before a model puts its own resmm
    first on sys.path): champion and challenger are scored on the rows of one split, whichever resmm each
    bundles, and a champion bundled before a change to the split still loads."""
    package = importlib.util.find_spec("resmm")  # locates the package without importing it
    path = Path(package.origin).parent / "data" / "split.py"
    spec = importlib.util.spec_from_file_location("_resmm_job_split", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: dataclasses and pickling look the module up there
    spec.loader.exec_module(module)
    return module


def one_side(batch: pd.DataFrame, split, validation: bool, val_fraction: float,
             group_column: str | None) -> pd.DataFrame:
    """The rows of one side of the split (`split`: the module from job_split), without the group column."""
    keys = contract_frame(batch[[c for c in ("sample_id", group_column) if c in batch.columns]])
    table = pa.Table.from_pandas(keys, preserve_index=False)
    in_val = split.is_validation(split.split_keys(table, group_column), val_fraction)
    kept = batch[in_val if validation else ~in_val]
    return kept.drop(columns=[group_column], errors="ignore").reset_index(drop=True)


class PyfuncPredictor:
    """map_batches actor: contract rows in, sample_id + predicted_label + prob_<class> out (one row per row)."""

    def __init__(self, model_uri: str, tracking_uri: str):
        self.model = _load(model_uri, tracking_uri)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        predictions = self.model.predict(contract_frame(batch)).reset_index(drop=True)
        return pd.concat([batch[["sample_id"]].reset_index(drop=True), predictions], axis=1)


class PatternEvaluator:
    """map_batches actor: for each presence pattern of the model's modalities, the predicted label of every row
    (optionally of one side of the split by group, else sample_id) with the other modalities hidden.
    Output columns: label, pred:<pattern>."""

    def __init__(self, model_uri: str, tracking_uri: str, validation: bool | None = None, val_fraction: float = 0.1,
                 group_column: str | None = None):
        self.split = job_split()
        self.model = _load(model_uri, tracking_uri)
        # Imported only now: the model's bundled resmm (first on sys.path after loading) is the one in use.
        from resmm.data.cells import label_name
        from resmm.train.robustness import pattern_name, presence_patterns

        self.label_name, self.pattern_name = label_name, pattern_name
        self.validation, self.val_fraction, self.group_column = validation, val_fraction, group_column
        spec = self.model.unwrap_python_model().spec
        self.modalities = list(spec.modalities)
        self.patterns = presence_patterns(self.modalities)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.validation is not None:  # one side of the hash split, done here to keep resmm out of fused stages
            batch = one_side(batch, self.split, self.validation, self.val_fraction, self.group_column)
        out = pd.DataFrame({"label": [self.label_name(v) for v in batch["label"]]})
        for pattern in self.patterns:
            masked = contract_frame(batch)
            for m in self.modalities:
                if m not in pattern and m in masked.columns:
                    masked[m] = None
            out[f"pred:{self.pattern_name(pattern)}"] = self.model.predict(masked)["predicted_label"].to_numpy()
        return out
