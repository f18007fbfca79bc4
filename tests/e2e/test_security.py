"""Security on real services: an MLflow server with basic-auth, shards on an S3-compatible endpoint (moto),
and recognisable secrets planted in every credential variable, searched for in everything the job wrote."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import RESMM
from tests.e2e.conftest import BIN, free_port, running_service, service_env

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "planted-mlflow-password-7f3a"
PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTED0KEYID42",
    "AWS_SECRET_ACCESS_KEY": "planted-aws-secret-9c1e",
    "AWS_SESSION_TOKEN": "planted-aws-session-token-55d0",
    "GOOGLE_API_KEY": "planted-google-api-key-3b8f",
    "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/planted-google-credentials-61aa.json",
    "AZURE_STORAGE_KEY": "planted-azure-storage-key-0e47",
    "AZURE_CLIENT_SECRET": "planted-azure-client-secret-a9c2",
    "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD,
    # The job starts its own local Ray, which takes this token for its token authentication.
    "RAY_AUTH_TOKEN": "plantedraytoken0123456789abcdef",
}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """`mlflow server --app-name basic-auth` on loopback; the admin password comes from the environment."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    uri = f"http://127.0.0.1:{free_port()}"
    env = service_env(MLFLOW_FLASK_SERVER_SECRET_KEY="csrf-key-for-tests", MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD)
    args = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", uri.rsplit(":", 1)[1], "--workers", "1"]
    with running_service(args, root / "server.log", f"{uri}/health", env, cwd=root, ok_codes=(200, 401)):
        yield uri, root


@pytest.fixture(scope="module")
def s3_shards(s3_endpoint, demo_slice):
    import s3fs

    fs = s3fs.S3FileSystem(key="test", secret="test", endpoint_url=s3_endpoint)
    fs.mkdir("resmm-secure")
    for shard in sorted(demo_slice.glob("*.parquet")):
        fs.put_file(str(shard), f"resmm-secure/demo/{shard.name}")
    return "s3://resmm-secure/demo"


def job_env(tracking_uri: str, s3_endpoint: str, **overrides) -> dict:
    env = service_env(MLFLOW_TRACKING_URI=tracking_uri, AWS_ENDPOINT_URL=s3_endpoint, AWS_DEFAULT_REGION="us-east-1",
                      MLFLOW_TRACKING_USERNAME="admin", **PLANTED)
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def run_train(args: list[str], env: dict, timeout_s: int = 900) -> subprocess.CompletedProcess:
    """`resmm train …` as a person types it, from a directory outside the checkout: the installed command alone
    trains and registers."""
    with tempfile.TemporaryDirectory() as elsewhere:
        return subprocess.run([RESMM, "train", *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=timeout_s)


@pytest.fixture(scope="module")
def secured_run(auth_server, s3_endpoint, s3_shards, tmp_path_factory):
    uri, _ = auth_server
    out = tmp_path_factory.mktemp("secured")
    completed = run_train(
        [f"data.path={s3_shards}", "train.num_workers=1", "train.cpus_per_worker=1", "train.epochs=1",
         "train.batch_size_per_worker=32", f"train.storage_path={out / 'runs'}", "mlflow.experiment=secured",
         "data.cache_path=s3://resmm-secure/feature-cache",
         "mlflow.registered_model=resmm-secured", "--summary-json", str(out / "summary.json")],
        job_env(uri, s3_endpoint),
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads((out / "summary.json").read_text()), completed, out


def test_job_with_credentials_reads_s3_logs_and_registers(secured_run, auth_server):
    summary, _, _ = secured_run
    uri, _ = auth_server
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD)
    try:
        client = MlflowClient(uri)
        run = client.get_run(summary["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.params["data.path"] == "s3://resmm-secure/demo"
        assert client.get_model_version("resmm-secured", summary["model_version"]).run_id == run.info.run_id
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)
    assert summary["data_profile"]["rows"] > 1000  # every shard came through s3fs from the endpoint


def test_the_feature_cache_lives_on_the_object_store(secured_run, s3_endpoint, s3_shards):
    import s3fs

    summary, _, _ = secured_run
    cache = summary["cache"]
    fs = s3fs.S3FileSystem(key="test", secret="test", endpoint_url=s3_endpoint)
    shards = fs.ls(s3_shards.removeprefix("s3://"))
    entries = [p for p in fs.ls("resmm-secure/feature-cache") if p.endswith(".parquet")]
    assert cache["location"] == "s3://resmm-secure/feature-cache" and cache["entries"]["built"] == len(shards)
    assert len(entries) == len(shards) and cache["cached_rows"] == 0
    import pyarrow.parquet as pq

    rows = 0
    for shard in shards:
        with fs.open(shard, "rb") as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    assert cache["decoded_rows"] == rows  # every row decoded once, into entries written through s3fs
    assert cache["bytes"] == sum(fs.info(p)["size"] for p in entries) > 0


def test_no_planted_secret_appears_in_anything_written(secured_run, auth_server):
    summary, completed, out = secured_run
    _, server_root = auth_server
    written = {"stdout": completed.stdout.encode(), "stderr": completed.stderr.encode()}
    for root in (out, server_root):  # summary, checkpoints, quarantine file; MLflow's database and artifacts
        for path in Path(root).rglob("*"):
            if path.is_file() and path.name != "basic_auth.db":  # the auth db holds a salted hash by design
                written[str(path)] = path.read_bytes()
    assert len(written) > 20 and any(p.endswith("MLmodel") for p in written)
    for name, secret in PLANTED.items():
        leaks = [where for where, data in written.items() if secret.encode() in data]
        assert not leaks, f"{name} leaked into {leaks}"


@pytest.mark.parametrize("password, expected", [("not-the-password", "were refused"), (None, "are missing")])
def test_wrong_or_missing_mlflow_credentials_fail_fast_with_one_line(auth_server, s3_endpoint, s3_shards, tmp_path,
                                                                   password, expected):
    uri, _ = auth_server
    env = job_env(uri, s3_endpoint, MLFLOW_TRACKING_PASSWORD=password)
    if password is None:
        env.pop("MLFLOW_TRACKING_USERNAME")
    started = time.monotonic()
    completed = run_train([f"data.path={s3_shards}", f"train.storage_path={tmp_path}"], env, timeout_s=120)
    assert completed.returncode == 2
    assert time.monotonic() - started < 60
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "HTTP 401" in lines[0], completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    assert "not-the-password" not in completed.stdout + completed.stderr
