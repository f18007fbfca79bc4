"""Secrets are masked wherever resmm writes: params, tags, logged dicts, the summary JSON, progress lines."""
import json

from mlflow.tracking import MlflowClient

from resmm.config import load_config
from resmm.console import say
from resmm.secrets import MASK, redact, redact_text, secret_values
from resmm.summary import write_json
from resmm.tracking import runs

SECRET = "planted-secret-value-1234"


def test_credential_variables_are_secret_and_ordinary_ones_are_not():
    environ = {name: f"{name}-{SECRET}" for name in (
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "GOOGLE_APPLICATION_CREDENTIALS",
        "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MY_DB_PASSWORD")}
    environ.update(AWS_DEFAULT_REGION="eu-west-1", AWS_ENDPOINT_URL="http://127.0.0.1:9000", RAY_AUTH_MODE="token",
                   AWS_CA_BUNDLE="/etc/ssl/certs/ca.pem", HOME="/root", SSH_AUTH_SOCK="/tmp/agent")
    values = secret_values(environ)
    assert sorted(values) == sorted(v for v in environ.values() if SECRET in v)


def test_a_token_count_is_a_setting_not_a_credential():
    assert redact({"data.text.max_tokens": 72, "mlflow.tracking_token": "t0p-s3cret"}) == {
        "data.text.max_tokens": 72, "mlflow.tracking_token": "***"}


def test_redact_masks_values_keys_and_url_passwords(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    tree = {"path": f"s3://bucket/{SECRET}/x", "url": "https://alice:hunter22@host/data", "api_key": "k-123456",
            "nested": [{"note": f"value {SECRET}"}], "epochs": 4}
    masked = redact(tree)
    assert masked == {"path": f"s3://bucket/{MASK}/x", "url": f"https://{MASK}@host/data", "api_key": MASK,
                      "nested": [{"note": f"value {MASK}"}], "epochs": 4}
    assert redact_text("s3://bucket/plain") == "s3://bucket/plain"


def test_params_tags_dicts_and_summary_never_hold_the_secret(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config(overrides=[f"data.path=abfs://container@{SECRET}.dfs.core.windows.net/shards"])
    run_id, _ = runs.start_run(uri, "secrets", None, cfg.flat(), {"resmm.data_path": cfg.data.path})
    runs.log_dict(uri, run_id, cfg.model_dump(mode="json"), "config/resolved_config.json")
    run = MlflowClient(uri).get_run(run_id)
    assert SECRET not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    assert MASK in run.data.params["data.path"]
    logged = MlflowClient(uri).download_artifacts(run_id, "config/resolved_config.json", str(tmp_path))
    assert SECRET not in open(logged).read()
    write_json({"data": cfg.data.path}, tmp_path / "summary.json")
    assert SECRET not in (tmp_path / "summary.json").read_text()
    say(f"[resmm] scanning shards under {cfg.data.path}")
    assert SECRET not in capsys.readouterr().out
