"""The MLflow server exactly as infra/mlflow.yaml deploys it, on a real PostgreSQL on loopback: in-cluster Host
headers are served, the credentials of a Secret are checked, and the basic-auth users live in Postgres.

The command line and basic_auth.ini come from the manifest. What the cluster supplies differs and nothing else:
the bind address and port (loopback, a free port), the Postgres address (PGHOST/PGPORT) and the Secrets' values.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO
from tests.e2e.conftest import BIN, free_port, running_service, service_env, stop

pytestmark = pytest.mark.e2e

MANIFEST = REPO / "infra" / "mlflow.yaml"
IN_CLUSTER_HOSTS = ["mlflow:5000", "mlflow.resmm.svc.cluster.local:5000"]
SERVER_SECRET = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-key-for-tests", "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-pw-3c9e"}
POSTGRES_PASSWORD = "postgres-pw-81d2"
CLIENT = ("resmm", "client-pw-5a7b")  # what Secret resmm-mlflow-client holds: MLFLOW_TRACKING_USERNAME / _PASSWORD


def manifest_documents() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def deployed_container() -> dict:
    return manifest_documents()[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]


def deployed_command(port: int) -> list[str]:
    """The container's `sh -c` script as an argv, bound to loopback on `port` instead of 0.0.0.0:5000."""
    container = deployed_container()
    assert container["command"] == ["sh", "-c"]
    argv = shlex.split(container["args"][0])
    assert argv[:2] == ["exec", "mlflow"], argv
    argv = [str(BIN / "mlflow"), *argv[2:]]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    return argv


def pg_bin(name: str) -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not found and not shutil.which(name):
        pytest.skip(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found[-1] if found else Path(shutil.which(name))


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 with database `mlflow` owned by user `mlflow`, as the
    manifest's StatefulSet creates it. initdb refuses root, so as root it runs as the `postgres` account."""
    import psycopg

    as_user = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` account to run PostgreSQL as")
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="resmm-pg-"))
    try:
        if as_user:
            os.chown(root, as_user["user"], as_user["group"])
        (root / "pwfile").write_text(POSTGRES_PASSWORD)
        if as_user:
            os.chown(root / "pwfile", as_user["user"], as_user["group"])
        subprocess.run([str(pg_bin("initdb")), "-D", str(root / "data"), "-U", "mlflow", "--auth=scram-sha-256",
                        f"--pwfile={root / 'pwfile'}", "-E", "UTF8", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, timeout=120, cwd=root, **as_user)
        port = free_port()
        with open(root / "postgres.log", "w") as log:
            proc = subprocess.Popen(
                [str(pg_bin("postgres")), "-D", str(root / "data"), "-p", str(port), "-k", str(root),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root, **as_user)
        try:
            connect = dict(host="127.0.0.1", port=port, user="mlflow", password=POSTGRES_PASSWORD)
            deadline = time.time() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"postgres exited: {(root / 'postgres.log').read_text()[-2000:]}")
                try:
                    conn = psycopg.connect(dbname="postgres", **connect)
                    break
                except psycopg.OperationalError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.5)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE mlflow OWNER mlflow")
            conn.close()
            yield {**connect, "dbname": "mlflow"}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # fast shutdown; SIGTERM would wait for clients to leave
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def deployed_mlflow(postgres: dict):
    """One MLflow server pod as the manifest describes it; yields its URL on loopback."""
    container = deployed_container()
    root = Path(tempfile.mkdtemp(prefix="resmm-mlflow-pod-"))
    try:
        ini = manifest_documents()[("ConfigMap", "mlflow-basic-auth")]["data"]["basic_auth.ini"]
        (root / "basic_auth.ini").write_text(ini)
        env = service_env(**SERVER_SECRET)
        env.update({item["name"]: item["value"] for item in container["env"] if "value" in item})
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(root / "basic_auth.ini"), PGHOST=postgres["host"],
                   PGPORT=str(postgres["port"]), PGPASSWORD=postgres["password"])
        port = free_port()
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(running_service(deployed_command(port), root / "server.log",
                                                    f"http://127.0.0.1:{port}/health", env, cwd=root))
            except (RuntimeError, TimeoutError) as exc:  # the server's own words say why
                raise RuntimeError(f"{exc}\n{(root / 'server.log').read_text()[-4000:]}") from None
            yield f"http://127.0.0.1:{port}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def call(url: str, path: str, host: str, auth, method: str = "GET", **kwargs) -> requests.Response:
    return requests.request(method, f"{url}{path}", headers={"Host": host}, auth=auth, timeout=30, **kwargs)


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


@pytest.fixture(scope="module")
def mlflow_pod(postgres):
    """The server, with the client user of Secret resmm-mlflow-client created by the admin (the runbook's step)."""
    with deployed_mlflow(postgres) as url:
        admin = ("admin", SERVER_SECRET["MLFLOW_AUTH_ADMIN_PASSWORD"])
        created = call(url, "/api/2.0/mlflow/users/create", IN_CLUSTER_HOSTS[0], admin, "POST",
                       json={"username": CLIENT[0], "password": CLIENT[1]})
        assert created.status_code == 200, created.text
        yield url


@pytest.mark.parametrize("host", IN_CLUSTER_HOSTS)
def test_in_cluster_host_with_the_secret_credentials_is_served(mlflow_pod, host):
    response = call(mlflow_pod, SEARCH, host, CLIENT)
    assert response.status_code == 200, response.text
    assert "experiments" in response.json()


def test_wrong_credentials_get_401(mlflow_pod):
    assert call(mlflow_pod, SEARCH, IN_CLUSTER_HOSTS[0], (CLIENT[0], "not-the-password")).status_code == 401
    assert call(mlflow_pod, SEARCH, IN_CLUSTER_HOSTS[0], None).status_code == 401


def test_a_host_outside_the_allowed_list_is_still_refused(mlflow_pod):
    response = call(mlflow_pod, SEARCH, "attacker.example.com", CLIENT)
    assert response.status_code == 403 and "Invalid Host header" in response.text


def test_users_live_in_postgres_so_a_new_server_pod_knows_them(mlflow_pod, postgres):
    import psycopg

    with psycopg.connect(**postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT username FROM users ORDER BY username")
        assert [row[0] for row in cur.fetchall()] == ["admin", CLIENT[0]]
    with deployed_mlflow(postgres) as fresh:  # a new pod: fresh filesystem, same Postgres
        assert call(fresh, SEARCH, IN_CLUSTER_HOSTS[0], CLIENT).status_code == 200
        assert call(fresh, SEARCH, IN_CLUSTER_HOSTS[0], (CLIENT[0], "not-the-password")).status_code == 401
