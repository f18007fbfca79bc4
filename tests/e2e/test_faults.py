"""Failures on real processes: a Ray Train worker SIGKILLed mid-run, and a whole job stopped and re-run.

Progress since the last checkpoint is the only loss, and each job keeps exactly one MLflow run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import BIN, cluster_pids, job_submit_command, service_env, submit_job

pytestmark = pytest.mark.e2e


def train_args(demo_slice, out: Path, run_name: str, experiment: str) -> list[str]:
    return ["jobs/train.py", f"data.path={demo_slice}", "train.num_workers=2", "train.epochs=4",
            "train.batch_size_per_worker=16", "train.max_failures=2", f"train.run_name={run_name}",
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


def test_killed_worker_resumes_from_checkpoint_in_one_mlflow_run(ray_head, mlflow_server, demo_slice, tmp_path):
    args = train_args(demo_slice, tmp_path, "killed-worker", "faults")
    log = open(tmp_path / "job.log", "w")
    proc = subprocess.Popen(job_submit_command(ray_head, args, {"MLFLOW_TRACKING_URI": mlflow_server}),
                            env=service_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_checkpoint(tmp_path / "runs" / "killed-worker", proc)
        workers = cluster_pids(ray_head, "ray::RayTrainWorker")
        assert len(workers) == 2, workers
        os.kill(max(workers), signal.SIGKILL)  # from outside, as a preempted node would
        assert proc.wait(900) == 0, (tmp_path / "job.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["restarts"] >= 1
    assert summary["start_epoch"] >= 1  # the new worker group resumed, it did not start over
    matching = runs_named(mlflow_server, "faults", "killed-worker")
    assert [r.info.run_id for r in matching] == [summary["mlflow_run_id"]]
    run = matching[0]
    assert run.info.status == "FINISHED" and run.data.metrics["train/restarts"] == summary["restarts"]
    steps = {m.step for m in MlflowClient(mlflow_server).get_metric_history(run.info.run_id, "val/accuracy")}
    assert steps == {0, 1, 2, 3}
    assert 0.2 <= summary["metrics"]["val_balanced_accuracy"] <= 1.0


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
