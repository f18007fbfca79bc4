"""The registered pyfunc: logged from code (nothing pickled), pinned requirements, and requests with missing,
base64, raw or broken media scored row by row."""
from __future__ import annotations

import base64
import importlib.metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.exceptions import MlflowException

from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.modalities.network import build_model
from resmm.models.predictor import Predictor
from resmm.tracking import registry
from resmm.tracking.pyfunc_model import UNREADABLE
from tests.conftest import audio_bytes, png_bytes

CLASSES = ("cat", "dog", "eel")


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny untrained network, logged and registered in a sqlite store; yields (loaded model, model dir)."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    cfg = load_config(None, ["model.embed_dim=16", "data.image_size_px=16"])
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, CLASSES)
    torch.manual_seed(0)
    network = build_model(cfg.model, spec, cfg.data.impute)
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("served", artifact_location=str(root / "artifacts"))).info.run_id
    bundle = {"model": cfg.model.model_dump(mode="json"), "spec": spec.to_dict(), "impute": "zero"}
    versions = [registry.log_and_register(
        tracking_uri=uri, run_id=run_id, registered_model="served", model_state=network.state_dict(), bundle=payload,
        tags={"resmm.config_hash": "abc"},
    )[1] for payload in (bundle, {**bundle, "predictor": Predictor("head:text", 0.0, {"text": 1.0}).as_dict()})]
    mlflow.set_tracking_uri(uri)
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/served/{versions[0]}", dst_path=str(root / "dl")))
    yield (mlflow.pyfunc.load_model(f"models:/served/{versions[0]}"), model_dir,
           mlflow.pyfunc.load_model(f"models:/served/{versions[1]}"))
    mlflow.set_tracking_uri(None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_model_is_logged_from_code_with_pinned_requirements(registered):
    _, model_dir, _ = registered
    flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("served_model.py")
    assert not list(model_dir.rglob("*.pkl"))  # nothing cloudpickled
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert f"torch=={importlib.metadata.version('torch').split('+')[0]}" in requirements
    assert f"numpy=={importlib.metadata.version('numpy')}" in requirements
    assert (model_dir / "serving_input_example.json").exists()


def test_rows_lacking_any_modality_are_scored(registered):
    model, *_ = registered
    frame = pd.DataFrame({
        "sample_id": ["all", "no-image", "text-only", "nothing", "empty-strings"],
        "image": [b64(png_bytes()), None, None, None, ""],
        "text": ["a dog", "a cat", "an eel", None, ""],
        "audio": [b64(audio_bytes()), b64(audio_bytes(seed=1)), None, None, ""],
    })
    out = model.predict(frame)
    probs = out[[f"prob_{c}" for c in CLASSES]].to_numpy()
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert set(out["predicted_label"]) <= set(CLASSES)
    assert out[UNREADABLE].tolist() == [""] * 5  # missing is not unreadable


def test_raw_bytes_from_python_score_like_base64_from_json(registered):
    model, *_ = registered
    raw = pd.DataFrame({"image": [png_bytes(seed=3)], "text": ["an eel"], "audio": [audio_bytes(seed=3)]})
    encoded = pd.DataFrame({"image": [b64(png_bytes(seed=3))], "text": ["an eel"], "audio": [b64(audio_bytes(seed=3))]})
    np.testing.assert_allclose(model.predict(raw).filter(like="prob_").to_numpy(),
                               model.predict(encoded).filter(like="prob_").to_numpy(), atol=1e-6)


def test_corrupt_media_counts_as_missing_for_that_cell_only(registered):
    model, *_ = registered
    frame = pd.DataFrame({
        "image": [b64(b"\x89PNG not really"), "%%% not base64 %%%", b64(png_bytes())],
        "text": ["a cat", "a cat", "a cat"],
        "audio": [b64(audio_bytes()), b64(b"RIFF broken"), None],
    })
    out = model.predict(frame)
    assert out[UNREADABLE].tolist() == ["image", "image,audio", ""]
    # A corrupt image scores exactly like no image at all.
    missing = frame.assign(image=[None, None, None])
    np.testing.assert_allclose(out.filter(like="prob_").to_numpy()[0],
                               model.predict(missing).filter(like="prob_").to_numpy()[0], atol=1e-6)


def test_requests_that_break_the_schema_are_refused_with_a_reason(registered):
    model, *_ = registered
    with pytest.raises(MlflowException, match="no rows"):
        model.predict(pd.DataFrame({"text": pd.Series([], dtype=object)}))
    with pytest.raises(MlflowException, match="column 'image' holds a int"):
        model.predict(pd.DataFrame({"image": pd.Series([5, "abc"], dtype=object), "text": ["a", "b"]}))


def test_the_bundles_chosen_predictor_is_what_predict_serves(registered):
    fused_model, _, text_head_model = registered
    frame = pd.DataFrame({
        "image": [b64(png_bytes(seed=1)), b64(png_bytes(seed=2)), b64(png_bytes(seed=1))],
        "text": ["a dog", "a dog", None],
        "audio": [b64(audio_bytes(seed=1)), None, b64(audio_bytes(seed=2))],
    })
    fused = fused_model.predict(frame).filter(like="prob_").to_numpy()
    chosen = text_head_model.predict(frame).filter(like="prob_").to_numpy()
    # The text head sees only the text: rows 0 and 1 share it and get the same probabilities, unlike the fused head.
    np.testing.assert_allclose(chosen[0], chosen[1], atol=1e-6)
    assert np.abs(fused[0] - fused[1]).max() > 1e-4
    # A row without text has no weighted part present and falls back to the fused head.
    np.testing.assert_allclose(chosen[2], fused[2], atol=1e-6)
