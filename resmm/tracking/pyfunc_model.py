"""The served model: an MLflow pyfunc whose `predict` takes Parquet-contract rows and returns class probabilities."""
from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from resmm.config import ModelConfig
from resmm.data.batch import BatchPreprocessor, PreprocessSpec

WEIGHTS_ARTIFACT = "weights"
BUNDLE_ARTIFACT = "bundle"
PREDICTED_LABEL = "predicted_label"


def probability_column(class_name: str) -> str:
    return f"prob_{class_name}"


def load_network(bundle: dict, weights_path: str):
    """Rebuild the network from its saved bundle (model config + preprocessing spec) and state dict."""
    from resmm.models.builders import build_model

    spec = PreprocessSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in bundle["spec"].items()})
    network = build_model(ModelConfig(**bundle["model"]), spec, bundle.get("impute", "zero"))
    # weights_only=True: the registry holds tensors, never arbitrary pickles.
    network.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return network.eval(), spec


class ResmmPyfunc(mlflow.pyfunc.PythonModel):
    """Rows in the Parquet contract (raw bytes and strings, nulls allowed) -> prob_<class>... + predicted_label."""

    batch_rows = 256

    def load_context(self, context) -> None:
        with open(context.artifacts[BUNDLE_ARTIFACT]) as handle:
            bundle = json.load(handle)
        self.network, self.spec = load_network(bundle, context.artifacts[WEIGHTS_ARTIFACT])
        self.preprocess = BatchPreprocessor(self.spec)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        probabilities = [self._predict_chunk(model_input.iloc[i : i + self.batch_rows])
                         for i in range(0, len(model_input), self.batch_rows)]
        probs = np.concatenate(probabilities) if probabilities else np.zeros((0, len(self.spec.classes)))
        out = pd.DataFrame(
            {probability_column(c): probs[:, i].astype(np.float64) for i, c in enumerate(self.spec.classes)},
            index=model_input.index,
        )
        out[PREDICTED_LABEL] = np.asarray(self.spec.classes, dtype=object)[probs.argmax(1)] if len(probs) else []
        return out

    @torch.no_grad()
    def _predict_chunk(self, frame: pd.DataFrame) -> np.ndarray:
        columns = {c: frame[c].to_numpy(dtype=object) for c in self.spec.modalities if c in frame.columns}
        columns.setdefault("sample_id", np.array([None] * len(frame), dtype=object))
        arrays = self.preprocess(columns)
        batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
        return torch.softmax(self.network(batch).logits.float(), dim=1).numpy()
