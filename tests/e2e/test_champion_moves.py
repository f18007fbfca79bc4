"""Moves of @champion by hand against a real MLflow server: promote, roll back, the history and its audit
record, refusals with one line and exit code 2, and two concurrent rollbacks of which exactly one applies."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import mlflow
import pandas as pd
import pytest
from mlflow.models import infer_signature

from resmm.tracking import champion
from tests.conftest import REPO
from tests.e2e.conftest import service_env

pytestmark = pytest.mark.e2e


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"prob_a": [0.5] * len(model_input), "prob_b": [0.5] * len(model_input)})


def register(tracking_uri: str, name: str, fingerprint: str, inputs=("image", "text")) -> str:
    """A version with a serving signature (its contract) and the data fingerprint resmm tags it with."""
    mlflow.set_tracking_uri(tracking_uri)
    example = pd.DataFrame({column: ["x"] for column in inputs})
    signature = infer_signature(example, pd.DataFrame({"prob_a": [0.5], "prob_b": [0.5]}))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), signature=signature,
                                       registered_model_name=name)
    version = str(info.registered_model_version)
    mlflow.MlflowClient(tracking_uri).set_model_version_tag(name, version, champion.FINGERPRINT_TAG, fingerprint)
    return version


def models(tracking_uri: str, tmp_path, *args: str, wait: bool = True):
    command = [sys.executable, str(REPO / "jobs" / "models.py"), *args, f"retrain.lock_path={tmp_path / 'lock'}"]
    env = service_env(MLFLOW_TRACKING_URI=tracking_uri)
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def three_versions(mlflow_server):
    name = f"moves-{uuid.uuid4().hex[:8]}"
    return name, [register(mlflow_server, name, f"data-{i}") for i in (1, 2, 3)]


def test_promote_rollback_and_history_with_an_audit_record(mlflow_server, three_versions, tmp_path):
    name, (v1, v2, v3) = three_versions
    for version, reason in ((v1, "first"), (v2, "better on the audit set")):
        done = models(mlflow_server, tmp_path, "promote", version, "--reason", reason, "--name", name)
        assert done.returncode == 0, done.stderr
    back = models(mlflow_server, tmp_path, "rollback", "--reason", "v2 misroutes French calls", "--name", name,
                  "--summary-json", str(tmp_path / "rollback.json"))
    assert back.returncode == 0, back.stderr
    result = json.loads((tmp_path / "rollback.json").read_text())
    assert (result["from"], result["to"], result["action"]) == (v2, v1, "rolled_back")

    client = mlflow.MlflowClient(mlflow_server)
    assert client.get_model_version_by_alias(name, "champion").version == v1
    for version in (v1, v2):  # the audit record is on both versions
        tags = client.get_model_version(name, version).tags
        assert tags["resmm.rollback.from"] == v2 and tags["resmm.rollback.to"] == v1
        assert tags["resmm.rollback.reason"] == "v2 misroutes French calls"
        assert tags["resmm.rollback.user"] and tags["resmm.rollback.time"].startswith("20")
    moves = champion.history(client, name)
    assert [(m.version, m.previous, m.action) for m in moves] == [
        (v1, None, "manual_promotion"), (v2, v1, "manual_promotion"), (v1, v2, "rolled_back")]
    # the retrain gate reads this: data-2 was rolled back, so a retrain on it is skipped
    assert champion.rolled_back_on(client, name, "data-2").previous == v2
    assert champion.rolled_back_on(client, name, "data-3") is None

    listed = models(mlflow_server, tmp_path, "history", "--name", name, "--summary-json", str(tmp_path / "h.json"))
    assert listed.returncode == 0, listed.stderr
    rows = {row["version"]: row for row in json.loads((tmp_path / "h.json").read_text())}
    assert rows[v1]["held_champion"].count("..") == 2 and rows[v1]["held_champion"].endswith("now")
    assert rows[v2]["held_champion"].count("..") == 1 and rows[v3]["held_champion"] == ""
    assert rows[v2]["reason"] == "v2 misroutes French calls" and rows[v2]["data"] == "data-2"
    assert f"@champion = v{v1}" in listed.stdout


def test_refusals_are_one_line_and_exit_code_2(mlflow_server, three_versions, tmp_path):
    name, (v1, v2, v3) = three_versions
    assert models(mlflow_server, tmp_path, "promote", v1, "--reason", "first", "--name", name).returncode == 0
    other_contract = register(mlflow_server, name, "data-4", inputs=("image", "audio"))
    cases = {
        ("rollback", "--to", v3): "never held @champion",
        ("rollback",): "no champion before",
        ("promote", other_contract): "another data contract",
        ("promote", "99"): "has no version 99",
        ("promote", v1): "already @champion",
    }
    for args, message in cases.items():
        out = models(mlflow_server, tmp_path, *args, "--reason", "test", "--name", name)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("resmm: ") and message in out.stderr, out.stderr
    assert mlflow.MlflowClient(mlflow_server).get_model_version_by_alias(name, "champion").version == v1


def test_of_two_concurrent_rollbacks_one_applies_and_the_other_says_why(mlflow_server, three_versions, tmp_path):
    name, (v1, v2, v3) = three_versions
    for version in (v1, v2, v3):
        assert models(mlflow_server, tmp_path, "promote", version, "--reason", "next", "--name", name).returncode == 0
    # Both operators roll back the v3 they saw: --from makes the move a compare-and-set on @champion.
    racers = [models(mlflow_server, tmp_path, "rollback", "--from", v3, "--reason", f"racer {i}", "--name", name,
                     wait=False) for i in (1, 2)]
    outcomes = [(racer.wait(300), racer.stderr.read()) for racer in racers]
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    [loser] = [err for code, err in outcomes if code == 2]
    assert "holds the lock" in loser or f"not v{v3}" in loser, loser
    client = mlflow.MlflowClient(mlflow_server)
    assert client.get_model_version_by_alias(name, "champion").version == v2  # one step back, not two
    assert [m.action for m in champion.history(client, name)].count("rolled_back") == 1
