"""A whole job stopped (`ray job stop`) and re-run with the same run name resumes from its checkpoint in the same
MLflow run. Worker, node and head loss, mid-epoch, are in test_multi_node.py."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import BIN, job_submit_command, service_env, submit_job

pytestmark = pytest.mark.e2e


def train_args(demo_slice, out: Path, run_name: str, experiment: str) -> list[str]:
    named = [f"train.run_name={run_name}"]
    return ["jobs/train.py", f"data.path={demo_slice}", "train.num_workers=2", "train.epochs=3",
            "train.batch_size_per_worker=16", "train.max_failures=2", *named,
            f"train.storage_path={out / 'runs'}", f"mlflow.experiment={experiment}",
            "mlflow.registered_model=resmm-faults", "--summary-json", str(out / "summary.json")]


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    """Wait until one checkpoint is surely committed: a directory appears before Ray Train registers it, so
    wait for the second one, which is only written after the first report completed."""
    deadline = time.time() + timeout_s
    while len(list(run_dir.glob("checkpoint_*"))) < 2:
        assert proc.poll() is None, "the job ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.5)


def runs_named(tracking_uri: str, experiment: str, run_name: str) -> list:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], f"tags.`resmm.ray_train_run_name` = '{run_name}'")


def test_stopped_job_rerun_with_the_same_run_name_resumes(ray_head, mlflow_server, demo_slice, tmp_path):
    args = train_args(demo_slice, tmp_path, "stopped-job", "faults-rerun")
    env_vars = {"MLFLOW_TRACKING_URI": mlflow_server}
    proc = subprocess.Popen(job_submit_command(ray_head, args, env_vars, ["--submission-id", "stopped-job-1"]),
                            env=service_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_checkpoint(tmp_path / "runs" / "stopped-job", proc)
        subprocess.run([str(BIN / "ray"), "job", "stop", "--address", ray_head, "stopped-job-1"],
                       env=service_env(), check=True, capture_output=True, timeout=120)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "summary.json").exists()

    completed = submit_job(ray_head, args, env_vars)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["start_epoch"] >= 1 and summary["restarts"] == 0
    matching = runs_named(mlflow_server, "faults-rerun", "stopped-job")
    assert [r.info.run_id for r in matching] == [summary["mlflow_run_id"]]
    assert matching[0].info.status == "FINISHED"
