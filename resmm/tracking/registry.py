"""Logging the trained network as an MLflow pyfunc (models-from-code, with a signature and an input example),
and registering it."""
from __future__ import annotations

import importlib.metadata
import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

import resmm
from resmm.modalities.spec import PreprocessSpec
from resmm.modalities import MODALITIES
from resmm.secrets import redact
from resmm.tracking.pyfunc_model import (
    BUNDLE_ARTIFACT,
    IMPUTATION_UNCERTAINTY,
    PREDICTED_LABEL,
    UNREADABLE,
    WEIGHTS_ARTIFACT,
    probability_column,
)

# The file MLflow logs as the model's code; read, not imported, since it registers the model when it runs.
SERVED_MODEL_CODE = Path(__file__).with_name("served_model.py")
# What the served model imports (resmm's own code ships inside the model). Pinned to the versions this process
# trains with, so a serving environment built from the registry runs the same stack.
SERVING_PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "scipy", "pillow", "soundfile", "pydantic", "pyyaml")
# ... and what a model with pretrained towers or an hf tokenizer imports besides (the `pretrained` extra).
PRETRAINED_PACKAGES = ("transformers", "tokenizers", "safetensors", "huggingface_hub")


def serving_requirements(pretrained: bool = False) -> list[str]:
    # A local version label ("2.13.0+cpu") names a build that package indexes do not serve under that name.
    names = SERVING_PACKAGES + (PRETRAINED_PACKAGES if pretrained else ())
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in names]


def model_signature(modalities, classes, uncertainty: bool = False) -> ModelSignature:
    """Every input column is optional, so a JSON null can say "missing" in any column; each modality's type is
    its column's (`request_schema`: a string for text, and for image and audio as base64 in JSON, where raw
    bytes from Python pass too). An mvae imputer adds the imputation uncertainty."""
    inputs = Schema([ColSpec("string", "sample_id", required=False)]
                    + [ColSpec.from_json_dict(**MODALITIES[m].column.request_schema, name=m, required=False)
                       for m in modalities])
    outputs = Schema(
        [ColSpec("double", probability_column(c)) for c in classes]
        + [ColSpec("string", PREDICTED_LABEL), ColSpec("string", UNREADABLE)]
        + ([ColSpec("double", IMPUTATION_UNCERTAINTY)] if uncertainty else [])
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(spec: dict) -> pd.DataFrame:
    """Three request rows as a REST client sends them: every modality, one lacking the first, and one holding a
    single modality (the first that needs no media encoding: text by default).
    The media are tiny synthetic ones, so no training row ever lands in the model's artifacts."""
    saved = PreprocessSpec.from_dict(spec)
    cells = {m: MODALITIES[m].example_cell(saved.settings[m]) for m in saved.modalities}
    first = saved.modalities[0]
    only = next((m for m in saved.modalities if not MODALITIES[m].column.media), saved.modalities[-1])
    rows = [{"sample_id": "example-all", **cells},
            {"sample_id": f"example-no-{first}", **cells, first: None},
            {"sample_id": f"example-{only}-only", **{m: cells[m] if m == only else None for m in cells}}]
    return pd.DataFrame(rows)


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
                python_model=str(SERVED_MODEL_CODE),
                artifacts={WEIGHTS_ARTIFACT: str(weights), BUNDLE_ARTIFACT: str(bundle_path)},
                # Ship the resmm package inside the model so serving needs no separate install of it.
                code_paths=[str(Path(resmm.__file__).parent)],
                signature=model_signature(bundle["spec"]["modalities"], bundle["spec"]["classes"],
                                          uncertainty=bundle.get("impute") == "mvae"),
                input_example=input_example(bundle["spec"]),
                pip_requirements=serving_requirements(pretrained=uses_pretrained(bundle)),
                registered_model_name=registered_model,
            )
    version = str(info.registered_model_version)
    tag_version(tracking_uri, registered_model, version, tags)
    return info.model_uri, version


def uses_pretrained(bundle: dict) -> bool:
    """Whether the model needs the `pretrained` extra to serve: a tower, or settings that need it (an hf tokenizer
    for any encoder)."""
    return bool(bundle.get("pretrained")) or any(
        record.needs_pretrained(bundle["spec"].get(name) or {}) for name, record in MODALITIES.items()
        if record.needs_pretrained is not None)


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
