"""The served model: an MLflow pyfunc whose `predict` takes Parquet-contract rows and returns class probabilities
of the final predictor chosen on validation (resmm/models/predictor.py, saved in the bundle).

Rows come from Python (image / audio as raw bytes) or from a REST request (`mlflow models serve`, JSON), where
image and audio are base64 strings. Null, an empty string or an absent column means the modality is missing,
and so does media that cannot be read (bad base64, corrupt bytes): that cell is named in the row's
`unreadable_modalities`, and the rest of the request is scored as usual.
"""
from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from resmm.config import ModelConfig
from resmm.data.cells import column_cells
from resmm.modalities import MODALITIES
from resmm.modalities.base import CellTypeError
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.models.predictor import Predictor

WEIGHTS_ARTIFACT = "weights"
BUNDLE_ARTIFACT = "bundle"
PREDICTED_LABEL = "predicted_label"
UNREADABLE = "unreadable_modalities"
# data.impute=mvae: the mean posterior variance behind a row's imputed modalities (0 for complete rows).
IMPUTATION_UNCERTAINTY = "imputation_uncertainty"


class RequestError(MlflowException):
    """A request that breaks the model's input schema; the scoring server answers HTTP 400 with the message."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def probability_column(class_name: str) -> str:
    return f"prob_{class_name}"


def load_network(bundle: dict, weights_path: str):
    """Rebuild the network from its saved bundle (model config + preprocessing spec) and state dict; the
    bundle's chosen predictor is read separately (Predictor.from_dict)."""
    from resmm.modalities.network import build_model

    from resmm.models.pretrained import pretrained_preprocessing

    spec = PreprocessSpec.from_dict(bundle["spec"])
    network = build_model(ModelConfig(**bundle["model"]), spec, bundle.get("impute", "zero"))
    # A pretrained tower is rebuilt from its source: its preprocessing must be what training recorded.
    recorded, rebuilt = bundle.get("pretrained", {}), pretrained_preprocessing(network)
    if recorded != rebuilt:
        raise MlflowException(f"the pretrained towers at serving ({rebuilt}) differ from training's ({recorded}): "
                              f"serve with the same tower files (HF_HOME or the directory named)")
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
        self.predictor = Predictor.from_dict(bundle.get("predictor"))  # chosen on validation at training time
        self.preprocess = BatchPreprocessor(self.spec)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or len(model_input) == 0:
            raise RequestError("the request holds no rows")
        chunks = [self._predict_chunk(model_input.iloc[i : i + self.batch_rows])
                  for i in range(0, len(model_input), self.batch_rows)]
        probs = np.concatenate([p for p, _, _ in chunks])
        out = pd.DataFrame(
            {probability_column(c): probs[:, i].astype(np.float64) for i, c in enumerate(self.spec.classes)},
            index=model_input.index,
        )
        out[PREDICTED_LABEL] = np.asarray(self.spec.classes, dtype=object)[probs.argmax(1)]
        out[UNREADABLE] = [name for _, names, _ in chunks for name in names]
        if hasattr(self.network.imputer, "uncertainty"):
            out[IMPUTATION_UNCERTAINTY] = np.concatenate([u for _, _, u in chunks]).astype(np.float64)
        return out

    @torch.no_grad()
    def _predict_chunk(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray | None]:
        """(probabilities (rows, classes), per row the comma-joined modalities whose content was unreadable, and
        the imputation uncertainty of each row where the imputer has one)."""
        batch, unreadable = self.model_inputs(frame)
        output = self.network(batch)
        present = {m: batch[f"{m}_present"] for m in self.spec.modalities}
        probs = self.predictor.probabilities(output.logits, output.modality_logits, present).numpy()
        uncertainty = getattr(self.network.imputer, "uncertainty", None)
        return probs, unreadable, None if uncertainty is None else uncertainty(output.embeddings, present).numpy()

    def model_inputs(self, frame: pd.DataFrame) -> tuple[dict, list[str]]:
        """(the network's input batch, per row the comma-joined modalities whose content was unreadable)."""
        rows = len(frame)
        batch, unreadable = {}, [[] for _ in range(rows)]
        for modality in self.spec.modalities:
            cells = column_cells(frame[modality] if modality in frame.columns else None, rows)
            try:  # each modality's column reads its own cells (media as base64 in JSON, text, vectors, ...)
                cells, bad = zip(*(MODALITIES[modality].column.parse_request(v, modality) for v in cells))
            except CellTypeError as exc:
                raise RequestError(str(exc)) from None
            decoded = self.preprocess.decode_column(modality, list(cells))
            for row in range(rows):
                if bad[row] or (cells[row] is not None and not decoded.present[row]):
                    unreadable[row].append(modality)
            batch[modality] = torch.from_numpy(decoded.values)
            batch[f"{modality}_present"] = torch.from_numpy(decoded.present.astype(np.float32))
        return batch, [",".join(names) for names in unreadable]
