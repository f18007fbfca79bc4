"""Session-scoped real services for end-to-end tests: a Ray head (token auth on) and an MLflow server on loopback.

Each fixture stops only the processes it started (the head runs with --block in its own process group).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, ok_codes=(200,), timeout_s: float = 120, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status in ok_codes:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok_codes:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def stop(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def service_env(**extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # jobs run `python` from this venv
    env["RAY_AUTH_MODE"] = "token"
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


HEAD_GCS: dict[str, str] = {}  # dashboard URL -> the head's GCS address (what RAY_ADDRESS names)


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """`ray start --head --block` with token authentication (Ray's default); yields the dashboard URL."""
    gcs_port, dashboard_port = free_port(), free_port()
    log = open(tmp_path_factory.mktemp("ray-head") / "head.log", "w")
    # Every port explicit and a temp dir of its own: another Ray on this machine (a `make train`, say) holds
    # the defaults, and the job agent would silently fail to bind.
    ports = {flag: free_port() for flag in (
        "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
        "--runtime-env-agent-port", "--ray-client-server-port", "--node-manager-port", "--object-manager-port")}
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs_port}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
         "--disable-usage-stats", f"--temp-dir={temp_dir}", *(f"{k}={v}" for k, v in ports.items())],
        env=service_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard_port}"
    HEAD_GCS[url] = f"127.0.0.1:{gcs_port}"
    try:
        # 401 means the dashboard is up and enforcing the token.
        wait_http(f"{url}/api/version", ok_codes=(200, 401), proc=proc, timeout_s=180)
        yield url
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def running_service(args: list[str], log_path: Path, ready_url: str, env: dict | None = None, timeout_s: float = 120,
                    cwd=None, ok_codes=(200,)):
    """Start a server in its own process group, wait until `ready_url` answers, and stop it (only it) after."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
        try:
            wait_http(ready_url, ok_codes=ok_codes, proc=proc, timeout_s=timeout_s)
            yield proc
        finally:
            stop(proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` with a sqlite backend and proxied artifacts; yields its tracking URI."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"http://127.0.0.1:{free_port()}"
    args = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
            "--port", uri.rsplit(":", 1)[1], "--workers", "1"]
    with running_service(args, root / "server.log", f"{uri}/health", service_env(), cwd=root):
        yield uri


@pytest.fixture(scope="session")
def demo_slice(tmp_path_factory) -> Path:
    """A small real slice of the built-in dataset, built once per session."""
    from resmm.datasets.demo import DemoSpec, build

    return build(tmp_path_factory.mktemp("demo") / "demo", DemoSpec(rows=1500, shards=4), progress=lambda _: None)


def job_submit_command(dashboard_url: str, entrypoint_args: list[str], env_vars: dict, submit_args=()) -> list[str]:
    import json

    return [str(BIN / "ray"), "job", "submit", "--address", dashboard_url, "--working-dir", str(REPO),
            "--runtime-env-json", json.dumps({"env_vars": env_vars}), *submit_args, "--", "python", *entrypoint_args]


def submit_job(dashboard_url: str, entrypoint_args: list[str], env_vars: dict, timeout_s: int = 900, submit_args=()):
    """`ray job submit --working-dir <repo> -- python jobs/...` and wait for it; returns the CompletedProcess.

    The head's job agent can come up after the dashboard answers; Ray says to retry then, and so do we.
    """
    deadline = time.time() + 120
    while True:
        completed = subprocess.run(
            job_submit_command(dashboard_url, entrypoint_args, env_vars, submit_args),
            env=service_env(), capture_output=True, text=True, timeout=timeout_s,
        )
        if "No available agent to submit job" not in completed.stderr + completed.stdout or time.time() > deadline:
            return completed
        time.sleep(3)


@pytest.fixture(scope="session")
def submitted_run(ray_head, mlflow_server, demo_slice, tmp_path_factory):
    """One real training job through `ray job submit` (2 DDP workers, 4 epochs, retrieval on), registered as
    `resmm-e2e`; returns (summary, the job's output). Shared by the training and serving tests."""
    import json

    out = tmp_path_factory.mktemp("job")
    summary_path = out / "summary.json"
    completed = submit_job(
        ray_head,
        ["jobs/train.py", f"data.path={demo_slice}", "train.num_workers=2", "train.epochs=4",
         "train.batch_size_per_worker=16", "model.retrieval=true", f"train.storage_path={out / 'runs'}",
         "mlflow.experiment=e2e", "mlflow.registered_model=resmm-e2e", "--summary-json", str(summary_path)],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return json.loads(summary_path.read_text()), completed.stdout  # the job's own output; stderr is the CLI's


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's S3-compatible server on loopback; yields its endpoint URL (clients set AWS_ENDPOINT_URL)."""
    url = f"http://127.0.0.1:{free_port()}"
    args = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]]
    with running_service(args, tmp_path_factory.mktemp("moto") / "moto.log", f"{url}/moto-api/", timeout_s=60,
                         ok_codes=(200, 404)):
        yield url


def checkpoint_within_epoch(runs_dir: Path, proc: subprocess.Popen, after_epoch: int, timeout_s: float = 600) -> dict:
    """Wait until Ray Train has registered a mid-epoch checkpoint of an epoch after `after_epoch` (counted from 0)
    as a run's latest, the one a restart resumes from, and return its metrics. A checkpoint's directory appears
    before that: the controller registers reports when it next polls the workers, every 2 s."""
    import json

    deadline = time.time() + timeout_s
    while True:
        for snapshot in runs_dir.glob("*/checkpoint_manager_snapshot.json"):
            try:
                latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
            except (OSError, ValueError):  # being written
                continue
            metrics = latest.get("metrics") or {}
            if metrics.get("within_epoch") and metrics["epoch"] > after_epoch:
                return metrics
        assert proc.poll() is None, "the job ended before a mid-epoch checkpoint"
        assert time.time() < deadline, "no mid-epoch checkpoint appeared"
        time.sleep(0.1)


def assert_each_row_fed_once_per_epoch(fed_dir: Path, summary: dict) -> None:
    """Every epoch's audit ($RESMM_FED_ROWS_DIR): no row trained more copies than the epoch drew for it (0 rows
    trained twice, a resumed epoch included), and none left out but the workers' dropped last partial batches."""
    import numpy as np

    for epoch in range(1, summary["epochs"] + 1):
        fed = np.load(fed_dir / f"epoch-{epoch}.npz")
        drawn = dict(zip(fed["drawn_ids"].tolist(), fed["drawn_copies"].tolist()))
        trained = dict(zip(fed["trained_ids"].tolist(), fed["trained_copies"].tolist()))
        # every training row was streamed (an equal split across workers leaves out fewer rows than workers)
        assert 0 <= summary["data_profile"]["rows"] - len(drawn) < int(fed["workers"])
        twice = sum(max(0, copies - drawn.get(row, 0)) for row, copies in trained.items())
        missed = sum(copies - trained.get(row, 0) for row, copies in drawn.items())
        assert twice == 0, (epoch, twice)
        assert 0 <= missed < int(fed["workers"]) * int(fed["batch_rows"]), (epoch, missed)
