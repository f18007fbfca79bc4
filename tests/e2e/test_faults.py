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

from tests.e2e.conftest import (BIN, assert_each_row_fed_once_per_epoch, checkpoint_within_epoch, cluster_pids,
                               job_submit_command, service_env, submit_job)

pytestmark = pytest.mark.e2e


def train_args(demo_slice, out: Path, run_name: str | None, experiment: str, extra=()) -> list[str]:
    named = [f"train.run_name={run_name}", *extra] if run_name else list(extra)
    return ["jobs/train.py", f"data.path={demo_slice}", "train.num_workers=2", "train.epochs=4",
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


def test_worker_killed_mid_epoch_resumes_that_epoch_without_training_a_row_twice(ray_head, mlflow_server, demo_slice,
                                                                                  tmp_path):
    """SIGKILL a Ray Train worker from outside (as a preempted node would) just after a checkpoint inside an epoch.
    The new worker group resumes inside that epoch: the rows the checkpoint had trained are not fed again, and
    the rest are fed as an undisturbed epoch feeds them (every row's copies follow from its id and the epoch)."""
    args = train_args(demo_slice, tmp_path, "killed-worker", "faults", ["train.checkpoint_every_steps=12"])
    env_vars = {"MLFLOW_TRACKING_URI": mlflow_server, "RESMM_FED_ROWS_DIR": str(tmp_path / "fed")}
    log = open(tmp_path / "job.log", "w")
    proc = subprocess.Popen(job_submit_command(ray_head, args, env_vars), env=service_env(), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        interrupted = checkpoint_within_epoch(tmp_path / "runs", proc, after_epoch=0)
        time.sleep(2)  # the checkpoint is registered once its copy to storage completes
        workers = cluster_pids(ray_head, "ray::RayTrainWorker")
        assert len(workers) == 2, workers
        os.kill(max(workers), signal.SIGKILL)
        assert proc.wait(900) == 0, (tmp_path / "job.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["restarts"] == 1
    resumed = summary["resumed_within_epoch"]
    assert resumed["epoch"] == interrupted["epoch"] + 1 and 0 < resumed["trained_rows"] == interrupted["trained_rows"]

    assert_each_row_fed_once_per_epoch(tmp_path / "fed", summary)  # the resumed epoch as the undisturbed ones

    matching = runs_named(mlflow_server, "faults", "killed-worker")
    assert [r.info.run_id for r in matching] == [summary["mlflow_run_id"]]
    run = matching[0]
    assert run.info.status == "FINISHED" and run.data.metrics["train/restarts"] == 1
    client = MlflowClient(mlflow_server)
    assert len(client.search_model_versions(f"run_id = '{run.info.run_id}'")) == 1
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")}
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


def driver_pids(marker: str) -> list[int]:
    """The job's driver processes (the job supervisor's shell and its python), told apart by a path in argv."""
    pids = []
    for proc_dir in Path("/proc").iterdir():
        try:
            argv = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc_dir.name.isdigit() and "jobs/train.py" in argv and marker in argv:
            pids.append(int(proc_dir.name))
    return pids


def test_a_job_whose_driver_was_lost_resumes_on_resubmission_without_a_run_name(ray_head, mlflow_server, demo_slice,
                                                                                tmp_path):
    """As KubeRay's retry after a lost head: the driver dies without a word (SIGKILL), and the identical command
    comes again. The run name derives from config and data, so the retry finds the checkpoint and the MLflow run,
    which the lost driver left RUNNING and which is closed as KILLED once its heartbeat stops."""
    args = train_args(demo_slice, tmp_path, None, "faults-lost-driver")
    env_vars = {"MLFLOW_TRACKING_URI": mlflow_server, "RESMM_HEARTBEAT_SECONDS": "2"}
    proc = subprocess.Popen(job_submit_command(ray_head, args, env_vars), env=service_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not list((tmp_path / "runs").glob("resmm-*/checkpoint_*"))[1:]:  # two: the first is committed
            assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.5)
        drivers = driver_pids(str(tmp_path))
        assert drivers
        for pid in drivers:
            os.kill(pid, signal.SIGKILL)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("faults-lost-driver").experiment_id
    [orphan] = client.search_runs([experiment])
    assert orphan.info.status == "RUNNING"  # nobody ended it
    time.sleep(7)  # three missed beats of 2 s

    completed = submit_job(ray_head, args, env_vars)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["start_epoch"] >= 1  # resumed from the lost driver's checkpoint
    assert summary["cache"]["decoded_rows"] == 0, summary["cache"]  # the feature cache, not a second decode
    [run] = client.search_runs([experiment])
    assert run.info.run_id == orphan.info.run_id == summary["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["resmm.end_reason"].startswith("driver lost: no heartbeat since")
    assert [p.name for p in (tmp_path / "runs").glob("resmm-*")] == [summary["ray_train_run_name"]]
