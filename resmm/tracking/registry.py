"""Logging the trained network as an MLflow pyfunc with a signature, and registering it."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

import resmm
from resmm.secrets import redact
from resmm.tracking.pyfunc_model import (
    BUNDLE_ARTIFACT,
    PREDICTED_LABEL,
    WEIGHTS_ARTIFACT,
    ResmmPyfunc,
    probability_column,
)

# The serving environment: the same pinned stack resmm trains with (MLflow would otherwise infer it slowly).
_PIP_REQUIREMENTS = [
    "torch==2.13.0",
    "numpy",
    "pandas",
    "scipy",
    "pillow",
    "soundfile",
    "pydantic>=2.6",
    "pyyaml",
]


def model_signature(classes) -> ModelSignature:
    inputs = Schema(
        [
            ColSpec("string", "sample_id", required=False),
            ColSpec("binary", "image", required=False),
            ColSpec("string", "text", required=False),
            ColSpec("binary", "audio", required=False),
        ]
    )
    outputs = Schema(
        [ColSpec("double", probability_column(c)) for c in classes] + [ColSpec("string", PREDICTED_LABEL)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_and_register(
    *,
    tracking_uri: str,
    run_id: str,
    registered_model: str,
    model_state: dict,
    bundle: dict,
    tags: dict,
) -> tuple[str, str]:
    """Log the pyfunc under the run and register it; returns (model URI, registered version)."""
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save(model_state, weights)
        bundle_path = Path(tmp) / "bundle.json"
        bundle_path.write_text(json.dumps(bundle, indent=2))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ResmmPyfunc(),
                artifacts={WEIGHTS_ARTIFACT: str(weights), BUNDLE_ARTIFACT: str(bundle_path)},
                # Ship the resmm package inside the model so serving needs no separate install of it.
                code_paths=[str(Path(resmm.__file__).parent)],
                signature=model_signature(bundle["spec"]["classes"]),
                pip_requirements=_PIP_REQUIREMENTS,
                registered_model_name=registered_model,
            )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri)
    for key, value in redact(tags).items():
        client.set_model_version_tag(registered_model, version, key, str(value))
    return info.model_uri, version


def version_by_alias(tracking_uri: str, registered_model: str, alias: str):
    """The model version behind an alias, or None when the model or the alias does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient(tracking_uri).get_model_version_by_alias(registered_model, alias)
    except MlflowException:
        return None


def set_alias(tracking_uri: str, registered_model: str, alias: str, version: str) -> None:
    mlflow.MlflowClient(tracking_uri).set_registered_model_alias(registered_model, alias, str(version))


def tag_version(tracking_uri: str, registered_model: str, version: str, tags: dict) -> None:
    client = mlflow.MlflowClient(tracking_uri)
    for key, value in redact(tags).items():
        client.set_model_version_tag(registered_model, str(version), key, str(value))


def registered_weights(tracking_uri: str, model_uri: str) -> dict:
    """The state dict behind a registered resmm pyfunc (for warm starts)."""
    mlflow.set_tracking_uri(tracking_uri)
    network = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().network
    return {k: v.detach().cpu() for k, v in network.state_dict().items()}
