"""The registered version behind `mlflow models serve`, over REST: JSON rows with base64 media, nulls for missing."""
from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request

import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import BIN, free_port, running_service, service_env

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def serving(model_uri: str, mlflow_server: str, log_dir, **env):
    """`mlflow models serve` on a registered version, in this environment; yields its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    args = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "--host",
            "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
    with running_service(args, log_dir / "serve.log", f"{url}/ping",
                         service_env(MLFLOW_TRACKING_URI=mlflow_server, **env), timeout_s=180):
        yield url


@pytest.fixture(scope="module")
def served(submitted_run, mlflow_server, tmp_path_factory):
    """The e2e job's registered version behind `mlflow models serve`; yields its URL."""
    summary, _ = submitted_run
    with serving(f"models:/resmm-e2e/{summary['model_version']}", mlflow_server,
                 tmp_path_factory.mktemp("serve")) as url:
        yield url


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def predictions_of(url: str, rows: list[dict], classes: list[str]) -> list[dict]:
    """POST `rows`; asserts HTTP 200 and one prediction per row whose class probabilities sum to 1."""
    status, body = post(url, {"dataframe_records": rows})
    assert status == 200, body
    predictions = body["predictions"]
    assert len(predictions) == len(rows)
    for prediction in predictions:
        assert abs(sum(prediction[f"prob_{c}"] for c in classes) - 1.0) < 1e-4
    return predictions


def request_rows(demo_slice, count: int) -> list[dict]:
    table = pq.read_table(sorted(demo_slice.glob("*.parquet"))[0]).to_pandas()
    full = table[table["image"].notna() & table["text"].notna() & table["audio"].notna()].head(count)
    return [{"sample_id": row.sample_id, "image": base64.b64encode(row.image).decode(), "text": row.text,
             "audio": base64.b64encode(row.audio).decode()} for row in full.itertuples()]


def test_rest_rows_lacking_modalities_get_one_prediction_each(served, submitted_run, demo_slice):
    summary, _ = submitted_run
    rows = request_rows(demo_slice, 8)
    rows[1]["image"] = None  # lacks one modality, said with JSON null
    rows[2]["text"] = None
    rows[3]["audio"] = None
    rows[4].update(image=None, text=None)  # all but one
    rows[5].update(text=None, audio=None)
    del rows[6]["image"], rows[6]["audio"]  # keys left out
    rows[7]["image"] = base64.b64encode(b"\x89PNG\r\n\x1a\n truncated").decode()  # corrupt image
    predictions = predictions_of(served, rows, summary["classes"])
    for prediction in predictions:
        assert prediction["predicted_label"] in summary["classes"]
    assert [p["unreadable_modalities"] for p in predictions] == [""] * 7 + ["image"]


def test_rest_requests_that_break_the_schema_get_400_with_a_reason(served):
    status, body = post(served, {"dataframe_records": []})
    assert status == 400 and "no rows" in body["message"]
    status, body = post(served, {"dataframe_records": [{"image": 5, "text": "x"}, {"image": "abc", "text": "y"}]})
    assert status == 400 and "column 'image' holds a int" in body["message"]


def test_rest_returns_the_probabilities_of_the_predictor_chosen_on_validation(served, submitted_run, demo_slice,
                                                                              mlflow_server):
    import mlflow
    import numpy as np
    import pandas as pd

    from resmm.models.predictor import Predictor

    summary, _ = submitted_run
    rows = request_rows(demo_slice, 6)
    rows[1]["image"], rows[2]["text"] = None, None
    status, body = post(served, {"dataframe_records": rows})
    assert status == 200, body
    mlflow.set_tracking_uri(mlflow_server)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/resmm-e2e/{summary['model_version']}")
    finally:
        mlflow.set_tracking_uri(None)
    chosen = Predictor.from_dict(summary["predictor"]["chosen"])
    assert loaded.unwrap_python_model().predictor == chosen  # the bundle holds the run's choice
    local = loaded.predict(pd.DataFrame(rows)).filter(like="prob_")
    served_probs = pd.DataFrame(body["predictions"])[list(local.columns)].to_numpy()
    np.testing.assert_allclose(served_probs, local.to_numpy(), atol=1e-5)
    scores = {row["candidate"]: row["val_balanced_accuracy"] for row in summary["predictor"]["candidates"]}
    # The one-standard-error rule leaves the fused head only for a candidate that beats it.
    assert chosen.name in scores and scores[chosen.name] >= scores["fused"]
