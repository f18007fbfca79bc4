"""Which MLflow run a job lands in: the same config on the same data resumes a run whose driver was lost, and a
RUNNING run whose driver stopped beating is closed (a real MLflow store, sqlite in a temp dir)."""
from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from resmm.tracking import runs


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def test_the_run_key_depends_on_config_and_data_alone():
    assert runs.run_key("cfg", "data") == runs.run_key("cfg", "data")
    assert len({runs.run_key("cfg", "data"), runs.run_key("cfg2", "data"), runs.run_key("cfg", "data2")}) == 3


def test_a_resubmitted_job_resumes_the_run_its_lost_driver_left(store):
    key = runs.run_key("cfg", "data")
    first, name = runs.start_run(store, "exp", None, {"a": 1}, {}, key)
    assert name == key
    runs.end_run(store, first, "KILLED")  # its driver was lost (close_orphaned_runs says KILLED)
    again, again_name = runs.start_run(store, "exp", None, {"a": 1}, {}, key)
    assert (again, again_name) == (first, key)
    assert MlflowClient(store).get_run(first).info.status == "RUNNING"
    runs.end_run(store, first, "FINISHED")
    # A finished run is never resumed: the same job again is a new run, under a new Ray Train name.
    fresh, fresh_name = runs.start_run(store, "exp", None, {"a": 1}, {}, key)
    assert fresh != first and fresh_name == f"{key}-2"
    other, other_name = runs.start_run(store, "exp", None, {"a": 1}, {}, runs.run_key("cfg", "other data"))
    assert other not in (first, fresh) and other_name != key
    assert len(MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("exp").experiment_id])) == 3


def test_a_running_run_whose_driver_stopped_beating_is_closed(store, monkeypatch):
    client = MlflowClient(store)
    alive, _ = runs.start_run(store, "exp", None, {}, {}, runs.run_key("a", "d"))
    lost, _ = runs.start_run(store, "exp", None, {}, {}, runs.run_key("b", "d"))
    client.set_tag(lost, runs.HEARTBEAT_TAG, str(int(time.time() - runs.ORPHAN_AFTER_S - 5)))
    experiment = client.get_experiment_by_name("exp").experiment_id
    assert runs.close_orphaned_runs(client, experiment) == [lost]
    assert client.get_run(lost).info.status == "KILLED" and client.get_run(alive).info.status == "RUNNING"
    assert client.get_run(lost).data.tags[runs.END_REASON_TAG].startswith("driver lost: no heartbeat since")


def test_an_open_run_beats_and_ends_finished(store, monkeypatch):
    monkeypatch.setattr(runs, "HEARTBEAT_EVERY_S", 0.2)
    with runs.tracked_run(store, "exp", None, {}, {}, runs.run_key("c", "d")) as run:
        first = float(MlflowClient(store).get_run(run.run_id).data.tags[runs.HEARTBEAT_TAG])
        time.sleep(1.5)
        later = float(MlflowClient(store).get_run(run.run_id).data.tags[runs.HEARTBEAT_TAG])
    assert later > first
    assert MlflowClient(store).get_run(run.run_id).info.status == "FINISHED"


def test_metric_names_a_class_chose_are_logged_under_a_name_mlflow_takes(store):
    """Per-class charts are named by the user's class names, which may hold characters MLflow refuses."""
    run_id, _ = runs.start_run(store, "exp", None, {}, {}, runs.run_key("cfg", "data"))
    runs.log_metrics(store, run_id, {"fed_rows/T-shirt/top": 3, "fed_rows/a&b+c": 4, "fed_rows/ünï": 5}, step=0)
    logged = MlflowClient(store).get_run(run_id).data.metrics
    assert logged == {"fed_rows/T-shirt/top": 3.0, "fed_rows/a_b_c": 4.0, "fed_rows/ünï": 5.0}
