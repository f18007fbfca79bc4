"""A model of non-default encoders on every modality (pretrained towers for image and text, written by the test;
a Transformer over mel frames for audio) with the MVAE imputer: trained through `ray job submit` on 2 DDP
workers, registered, and served over REST with a per-row imputation uncertainty."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import submit_job
from tests.e2e.test_serving import predictions_of, request_rows, serving
from tests.towers import write_tiny_bert, write_tiny_vit

pytestmark = pytest.mark.e2e
MODEL = "resmm-towers"


@pytest.fixture(scope="module")
def towers_run(ray_head, mlflow_server, demo_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("towers")
    texts = [t for t in pq.read_table(demo_slice, columns=["text"]).column("text").to_pylist() if t]
    vit, bert = write_tiny_vit(out / "vit"), write_tiny_bert(out / "bert", texts)  # its WordPiece fits the data
    summary_path = out / "summary.json"
    completed = submit_job(
        ray_head,
        ["jobs/train.py", f"data.path={demo_slice}", f"model.encoders.image=hf:{vit}", f"model.encoders.text=hf:{bert}",
         "model.encoder_options.text.mode=finetune", "model.encoders.audio=transformer", "data.impute=mvae",
         "train.num_workers=2", "train.epochs=3", "train.batch_size_per_worker=16",
         f"train.storage_path={out / 'runs'}", "mlflow.experiment=e2e-towers", f"mlflow.registered_model={MODEL}",
         "--summary-json", str(summary_path)],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server, "HF_HUB_OFFLINE": "1"},
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return json.loads(summary_path.read_text()), vit, bert


@pytest.fixture(scope="module")
def served_towers(towers_run, mlflow_server, tmp_path_factory):
    summary, _, _ = towers_run
    with serving(f"models:/{MODEL}/{summary['model_version']}", mlflow_server, tmp_path_factory.mktemp("serve-towers"),
                 HF_HUB_OFFLINE="1") as url:
        yield url


def test_the_run_records_its_encoders_and_the_towers_preprocessing(towers_run, mlflow_server):
    import mlflow

    summary, vit, bert = towers_run
    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["model.encoders.image"] == f"hf:{vit}"
    assert run.data.params["model.encoders.audio"] == "transformer"
    assert run.data.params["model.encoder_options.text.mode"] == "finetune"
    assert run.data.params["data.impute"] == "mvae"
    mlflow.set_tracking_uri(mlflow_server)
    try:
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{summary['model_version']}"))
    finally:
        mlflow.set_tracking_uri(None)
    bundle = json.loads(next(model_dir.rglob("bundle.json")).read_text())
    assert bundle["pretrained"]["image"]["size_px"] == 16 and bundle["pretrained"]["text"]["mode"] == "finetune"
    assert bundle["spec"]["text"]["tokenizer"] == f"hf:{bert}" and bundle["spec"]["text"]["tokenizer_json"]
    # 3 epochs with tiny random towers still learn the demo slice (10 classes) at twice chance or more (0.28 seen).
    assert summary["metrics"]["val_balanced_accuracy"] > 0.2, summary["metrics"]


def test_rest_serves_the_towers_with_an_imputation_uncertainty_per_row(served_towers, towers_run, demo_slice):
    summary, _, _ = towers_run
    rows = request_rows(demo_slice, 6)
    rows[1]["image"] = None
    rows[2]["text"] = None
    rows[3] = {**rows[1], "sample_id": "row-1-without-audio", "audio": None}
    predictions = predictions_of(served_towers, rows, summary["classes"])
    uncertainty = [p["imputation_uncertainty"] for p in predictions]
    assert uncertainty[0] == 0 and uncertainty[4] == 0 and uncertainty[5] == 0  # complete rows impute nothing
    assert all(u > 0 for u in uncertainty[1:4])
    # The same row with one modality fewer: an expert fewer in the product, so a wider posterior.
    assert uncertainty[3] > uncertainty[1]
