"""Scheduled retraining and batch inference against a real mlflow server, jobs submitted to a real Ray head."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO
from tests.e2e.conftest import BIN, service_env, submit_job

pytestmark = pytest.mark.e2e

MODEL = "resmm-retrain"
TINY = ["train.epochs=1", "model.embed_dim=32", "train.batch_size_per_worker=32", "train.num_workers=2",
        f"mlflow.registered_model={MODEL}", "mlflow.experiment=e2e-retrain"]


@pytest.fixture(scope="module")
def workspace(demo_slice, tmp_path_factory):
    """Data grows shard by shard: the retrain job sees 2 of the demo slice's 4 shards at first."""
    root = tmp_path_factory.mktemp("retrain")
    shards = sorted(demo_slice.glob("*.parquet"))
    data = root / "data"
    data.mkdir()
    for shard in shards[:2]:
        shutil.copy(shard, data / shard.name)
    return {"root": root, "data": data, "spare": shards[2:]}


def retrain(ray_head, mlflow_server, workspace, tag: str) -> dict:
    summary = workspace["root"] / f"{tag}.json"
    completed = submit_job(
        ray_head,
        ["jobs/retrain.py", f"data.path={workspace['data']}", f"train.storage_path={workspace['root'] / 'runs'}",
         *TINY, "--summary-json", str(summary)],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(summary.read_text())


@pytest.fixture(scope="module")
def first(ray_head, mlflow_server, workspace):
    return retrain(ray_head, mlflow_server, workspace, "first")


def test_first_retrain_promotes_v1(first, mlflow_server):
    assert first["decision"]["action"] == "promoted"
    assert first["decision"]["reason"] == "no champion yet"
    client = MlflowClient(mlflow_server)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == first["decision"]["challenger_version"] == "1"
    assert champion.tags["resmm.data_fingerprint"] == first["data_fingerprint"]
    assert champion.tags["resmm.decision.action"] == "promoted"
    # lineage: fingerprint, commit and config hash on the version; the dataset logged as the run's input
    assert champion.tags["resmm.git_commit"] and champion.tags["resmm.config_hash"]
    run = client.get_run(champion.run_id)
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [first["data_fingerprint"][:36]]


def test_rerun_on_the_same_data_is_skipped(first, ray_head, mlflow_server, workspace):
    again = retrain(ray_head, mlflow_server, workspace, "again")
    assert again["decision"] == {"action": "skipped", "reason": "no new data", "champion_version": "1"}
    assert len(MlflowClient(mlflow_server).search_model_versions(f"name='{MODEL}'")) == 1


def test_new_shard_trains_a_challenger_and_records_the_decision(first, ray_head, mlflow_server, workspace):
    shutil.copy(workspace["spare"][0], workspace["data"] / workspace["spare"][0].name)
    second = retrain(ray_head, mlflow_server, workspace, "second")
    # The decoded-feature cache: the challenger decoded the new shard only, and read the others' entries.
    old_rows = sum(pq.read_metadata(p).num_rows for p in sorted(workspace["data"].glob("*.parquet"))[:2])
    assert first["training"]["cache"]["decoded_rows"] == old_rows and first["training"]["cache"]["cached_rows"] == 0
    cache = second["training"]["cache"]
    assert cache["decoded_rows"] == pq.read_metadata(workspace["spare"][0]).num_rows
    assert cache["cached_rows"] == old_rows and cache["entries"] == {"built": 1, "reused": 2, "rebuilt_corrupt": 0}
    decision = second["decision"]
    assert decision["action"] in ("promoted", "rejected")
    assert decision["champion_version"] == "1" and decision["challenger_version"] == "2"
    scores = decision["scores"]
    for side in ("champion", "challenger"):
        assert 0.0 <= scores[side]["balanced_accuracy"] <= 1.0 and len(scores[side]["patterns"]) == 7
    assert scores["champion"]["rows"] == scores["challenger"]["rows"] > 0  # same evaluation rows
    client = MlflowClient(mlflow_server)
    version = client.get_model_version(MODEL, "2")
    assert version.tags["resmm.decision.action"] == decision["action"]
    assert version.tags["resmm.decision.champion_version"] == "1"
    assert float(version.tags["resmm.decision.challenger_balanced_accuracy"]) == pytest.approx(
        scores["challenger"]["balanced_accuracy"], abs=1e-6)
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"
    expected_champion = "2" if decision["action"] == "promoted" else "1"
    assert client.get_model_version_by_alias(MODEL, "champion").version == expected_champion


def test_of_two_concurrent_retrains_only_one_trains(first, ray_head, mlflow_server, workspace):
    shutil.copy(workspace["spare"][1], workspace["data"] / workspace["spare"][1].name)
    versions_before = len(MlflowClient(mlflow_server).search_model_versions(f"name='{MODEL}'"))
    procs, paths = [], []
    for tag in ("left", "right"):
        path = workspace["root"] / f"{tag}.json"
        paths.append(path)
        procs.append(subprocess.Popen(
            [str(BIN / "python"), "jobs/retrain.py", f"data.path={workspace['data']}",
             f"train.storage_path={workspace['root'] / 'runs'}", *TINY, "--summary-json", str(path)],
            cwd=REPO, env=service_env(MLFLOW_TRACKING_URI=mlflow_server), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        ))
        time.sleep(0.5)
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    decisions = [json.loads(p.read_text())["decision"] for p in paths]
    actions = sorted(d["action"] for d in decisions)
    assert actions.count("skipped") == 1 and len(set(actions) - {"skipped"}) == 1, decisions
    skipped = next(d for d in decisions if d["action"] == "skipped")
    assert "another retrain or champion move holds the lock" in skipped["reason"]
    assert any("another retrain or champion move holds the lock" in out for out in outputs)
    assert len(MlflowClient(mlflow_server).search_model_versions(f"name='{MODEL}'")) == versions_before + 1


def test_a_rolled_back_champion_is_not_promoted_again_by_the_next_retrain_on_its_data(first, ray_head,
                                                                                      mlflow_server, workspace):
    """An operator rolls back the newest model; the next scheduled retrain sees the same data and leaves it."""
    client = MlflowClient(mlflow_server)
    newest = str(max(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'")))

    def models(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(  # the retrain job's lock: the same storage path
            [str(BIN / "python"), "jobs/models.py", *args, "--name", MODEL,
             f"train.storage_path={workspace['root'] / 'runs'}"], cwd=REPO,
            env=service_env(MLFLOW_TRACKING_URI=mlflow_server), capture_output=True, text=True, timeout=300)

    if client.get_model_version_by_alias(MODEL, "champion").version != newest:
        promoted = models("promote", newest, "--reason", "the newest, by hand")
        assert promoted.returncode == 0, promoted.stderr
    back = models("rollback", "--reason", "complaints after the release")
    assert back.returncode == 0, back.stderr
    assert client.get_model_version_by_alias(MODEL, "champion").version != newest

    versions = len(client.search_model_versions(f"name='{MODEL}'"))
    again = retrain(ray_head, mlflow_server, workspace, "after-rollback")
    assert again["decision"]["action"] == "skipped", again["decision"]
    assert f"v{newest}, trained on this data, was rolled back" in again["decision"]["reason"]
    assert "complaints after the release" in again["decision"]["reason"]
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions


def test_predict_job_writes_one_row_per_input_row(first, ray_head, mlflow_server, workspace, demo_slice):
    out = workspace["root"] / "predictions"
    completed = submit_job(
        ray_head,
        ["jobs/predict.py", "--model-uri", f"models:/{MODEL}@champion", "--input", str(demo_slice),
         "--output", str(out), "--concurrency", "1"],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    predictions = pq.read_table(out).to_pandas()
    source = pq.read_table(demo_slice, columns=["sample_id"]).to_pandas()
    assert len(predictions) == len(source)
    assert sorted(predictions["sample_id"]) == sorted(source["sample_id"])
    probs = predictions[[c for c in predictions.columns if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # A second run into the same location is refused instead of mixing outputs.
    again = subprocess.run(
        [str(BIN / "python"), "jobs/predict.py", "--input", str(demo_slice), "--output", str(out)],
        cwd=REPO, env=service_env(MLFLOW_TRACKING_URI=mlflow_server), capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 2 and "already holds files" in again.stderr and "Traceback" not in again.stderr


def test_champion_alias_loads_and_predicts_rows_lacking_a_modality(first, mlflow_server, demo_slice):
    import mlflow.pyfunc

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    frame = pq.read_table(next(demo_slice.glob("*.parquet"))).slice(0, 4).to_pandas()[["sample_id", "image", "text", "audio"]]
    frame["audio"] = None
    frame.loc[0, "text"] = None
    predictions = model.predict(frame)
    assert len(predictions) == 4 and predictions["predicted_label"].notna().all()
