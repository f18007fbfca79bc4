"""`RAY_ADDRESS=<head> python jobs/train.py` against a token-auth cluster: a missing or wrong token, or an address
where nothing listens, is one line naming the fix and exit code 2, never ray.init's traceback or a long retry."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import HEAD_GCS, REPO, free_port, service_env

pytestmark = pytest.mark.e2e


def train_against(address: str, home, data, **env) -> subprocess.CompletedProcess:
    environment = service_env(RAY_ADDRESS=address, HOME=str(home), **env)
    environment.pop("RAY_AUTH_TOKEN", None)
    environment.pop("RAY_AUTH_TOKEN_PATH", None)
    environment.update(env)
    return subprocess.run([sys.executable, "jobs/train.py", f"data.path={data}", "train.epochs=1"], cwd=REPO,
                          env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["no token", "wrong token"])
def test_a_client_without_the_clusters_token_gets_one_line(ray_head, demo_slice, tmp_path, token):
    completed = train_against(HEAD_GCS[ray_head], tmp_path, demo_slice, **({"RAY_AUTH_TOKEN": token} if token else {}))
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert lines[-1].startswith(f"resmm: the Ray cluster at {HEAD_GCS[ray_head]} refused this client")
    assert "RAY_AUTH_TOKEN" in lines[-1] and "ray get-auth-token" in lines[-1]


def test_an_address_where_nothing_listens_fails_in_seconds_with_one_line(demo_slice, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    completed = train_against(address, tmp_path, demo_slice, RAY_AUTH_TOKEN="0" * 64)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert completed.stderr.strip() == (f"resmm: no Ray cluster answers at RAY_ADDRESS={address} (nothing accepted a "
                                        "connection within 5 s): start the head or fix the address")
