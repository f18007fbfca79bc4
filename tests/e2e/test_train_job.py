"""The whole chain on real services: Parquet → Ray Data → 2-worker DDP → MLflow registry, via `ray job submit`."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def majority_class_rate(data_dir) -> float:
    from resmm.data.split import is_validation, split_keys

    table = pq.read_table(data_dir, columns=["sample_id", "label", "group_id"])
    frame = table.to_pandas()
    val = frame[is_validation(split_keys(table, "group_id"), 0.1) & frame["label"].notna()]
    return float(val["label"].value_counts(normalize=True).max())


def test_job_finishes_with_metrics_above_chance_and_a_registered_version(submitted_run, mlflow_server, demo_slice):
    summary, log = submitted_run
    client = MlflowClient(mlflow_server)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.num_workers"] == "2"
    history = client.get_metric_history(run.info.run_id, "val/balanced_accuracy")
    assert [m.step for m in history] == [0, 1, 2, 3]  # one point per epoch
    for key in ("train/loss", "val/accuracy", "val/macro_f1"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 4
    # Above chance: balanced accuracy at least twice chance (0.10 for 10 classes), and accuracy above what
    # always predicting the majority class would score on the same validation rows.
    assert run.data.metrics["best/balanced_accuracy"] >= 0.20
    assert run.data.metrics["best/accuracy"] > majority_class_rate(demo_slice) + 0.05
    assert summary["metrics"]["val_balanced_accuracy"] == pytest.approx(run.data.metrics["best/balanced_accuracy"])
    version = client.get_model_version("resmm-e2e", summary["model_version"])
    assert version.run_id == run.info.run_id
    assert version.tags["resmm.config_hash"] and version.tags["resmm.data_path"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/confusion_matrix.png" in artifacts
    assert summary["num_workers"] == 2 and summary["epochs"] == 4
    assert summary["rows_seen_train"] > 0 and summary["throughput_samples_per_s"] > 0
    assert "epoch 4/4 done" in log


def test_console_shows_progress_and_no_framework_noise(submitted_run):
    """What `ray job submit` shows: resmm's lines and bars; no warning, traceback or framework INFO log."""
    _, log = submitted_run
    job_log = log.split("Tailing logs until the job exits")[-1]  # after `ray job submit`'s own preamble
    lines = job_log.replace("\r", "\n").splitlines()
    assert any(line.startswith("validate train:") for line in lines)
    assert any(line.startswith("epoch 1/4:") and "rows/s" in line for line in lines)
    assert any(line.startswith("robustness:") for line in lines)
    noisy = [line for line in lines if re.search(r"warning|traceback| INFO |TrainingReport|Execution plan", line,
                                                  re.IGNORECASE)]
    assert noisy == []


def test_run_is_named_grouped_and_carries_system_metrics(submitted_run, mlflow_server):
    summary, _ = submitted_run
    run = MlflowClient(mlflow_server).get_run(summary["mlflow_run_id"])
    assert run.info.run_name == summary["ray_train_run_name"]
    metrics = set(run.data.metrics)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= metrics
    assert {f"fed_rows/{c}" for c in summary["classes"]} <= metrics
    assert {"quarantine/rows", "quarantine/null_label", "robustness/mean_pattern_accuracy", "train/restarts"} <= metrics
    assert run.data.metrics["cache/decoded_rows"] + run.data.metrics["cache/cached_rows"] == summary["cache"][
        "decoded_rows"] + summary["cache"]["cached_rows"] > 0
    # Every metric sits in a section; bookkeeping (worker-group starts) lives in a tag, not a metric.
    assert all("/" in name for name in metrics), sorted(m for m in metrics if "/" not in m)
    assert run.data.tags["resmm.worker_group_starts"] == "1"


def test_run_reports_profile_fed_counts_and_robustness(submitted_run, mlflow_server):
    summary, _ = submitted_run
    profile = summary["data_profile"]
    assert set(profile["presence"]) == {"image", "text", "audio"}
    assert sum(profile["class_counts"].values()) + profile["unlabeled_rows"] == profile["rows"]
    # The demo's unlabeled rows are quarantined (data.unlabeled_rows=quarantine) and written with reasons.
    quarantine = summary["quarantine"]
    assert quarantine["rows"]["null_label"] == quarantine["rows_total"] > 0 and quarantine["files"] == []
    assert pq.read_table(quarantine["location"]).num_rows == quarantine["rows_total"]
    assert summary["restarts"] == 0 and summary["start_epoch"] == 0
    assert all(0 < profile["presence"][m] < profile["rows"] for m in profile["presence"])
    assert set(summary["fed_class_counts"]) == set(summary["classes"])
    assert sum(summary["fed_class_counts"].values()) > 0.8 * sum(profile["class_counts"].values())
    robustness = summary["robustness"]
    assert set(robustness["patterns"]) == {
        "audio+image+text", "image+text", "audio+image", "audio+text", "image", "text", "audio"
    }
    for modality in ("image", "text", "audio"):
        curve = robustness["missing_rate"][modality]
        assert sorted(curve) == [f"{0.1 * i:.1f}" for i in range(10)]
        assert all(0.0 <= v <= 1.0 for v in curve.values())
    # Masking rows to fewer modalities cannot beat having all of them by much on a fused model.
    assert robustness["patterns"]["audio+image+text"] >= max(robustness["patterns"].values()) - 0.05
    # One loss and one score per modality head; retrieval recall at 1/5/10 both ways between every two modalities
    # (each modality's record says it takes part).
    for modality in ("image", "text", "audio"):
        assert 0.0 <= summary["heads"][f"{modality}_accuracy"] <= 1.0
    assert set(summary["retrieval"]) == {"image->text", "text->image", "audio->text", "text->audio", "audio->image",
                                         "image->audio"}
    for scores in summary["retrieval"].values():
        assert 0.0 <= scores["recall@1"] <= scores["recall@5"] <= scores["recall@10"] <= 1.0
        assert scores["rows"] > 10
    client = MlflowClient(mlflow_server)
    run = client.get_run(summary["mlflow_run_id"])
    for key in ("train/head/image/loss", "train/loss_retrieval", "val/head/audio/accuracy",
                "retrieval/image_to_text/recall_at_10"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(summary["mlflow_run_id"], "plots")}
    assert "plots/robustness.png" in artifacts
    tables = {a.path for a in client.list_artifacts(summary["mlflow_run_id"], "robustness")}
    assert {"robustness/report.json", "robustness/table.json"} <= tables


def test_registered_model_predicts_rows_missing_modalities(submitted_run, mlflow_server, demo_slice):
    import mlflow.pyfunc

    summary, _ = submitted_run
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"models:/resmm-e2e/{summary['model_version']}")
    frame = pq.read_table(next(demo_slice.glob("*.parquet"))).slice(0, 6).to_pandas()
    frame = frame[["sample_id", "image", "text", "audio"]].copy()
    frame.loc[0, ["image"]] = None  # lacks one modality
    frame.loc[1, ["image", "audio"]] = None  # lacks two
    frame.loc[2, ["text", "audio"]] = None
    predictions = model.predict(frame)
    assert len(predictions) == 6
    probs = predictions[[c for c in predictions.columns if c.startswith("prob_")]].to_numpy()
    assert probs.shape == (6, len(summary["classes"]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert set(predictions["predicted_label"]) <= set(summary["classes"])


def test_contract_violation_exits_2_naming_file_and_column(tmp_path):
    from tests.conftest import contract_table

    pq.write_table(contract_table().drop_columns(["text"]), tmp_path / "bad.parquet")
    completed = subprocess.run(
        [sys.executable, "jobs/train.py", f"data.path={tmp_path}"], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "bad.parquet: missing required column 'text'" in completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout


def test_config_error_exits_2_with_one_line():
    completed = subprocess.run(
        [sys.executable, "jobs/train.py", "model.fusion=transformer"], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "resmm: config error: model.fusion: must be one of 'concat', 'mean', 'gated', 'attention', 'mrn' or 'tensor' (got 'transformer')"
    ]


def test_default_budget_stops_when_validation_stalls(ray_head, mlflow_server, demo_slice, tmp_path):
    """No `train.epochs`: training runs until validation stops improving above its noise. A learning rate too
    small to move the weights gives the same score every epoch, so with no floor of steps the run must stop right
    after `patience` epochs; MLflow holds each epoch's reading with its error bar and the curve's plot."""
    import json

    from tests.e2e.conftest import submit_job

    summary_path = tmp_path / "summary.json"
    completed = submit_job(
        ray_head,
        ["jobs/train.py", f"data.path={demo_slice}", "train.num_workers=1", "model.embed_dim=16", "model.norm=group",
         "train.lr=1e-9",
         "train.patience=2", "train.min_steps=0", "train.max_epochs=8", f"train.storage_path={tmp_path / 'runs'}",
         "mlflow.experiment=e2e-budget", "mlflow.registered_model=resmm-budget", "--summary-json", str(summary_path)],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["epochs"] == 3
    # The stop reason and the summary count epochs alike: the best epoch is the registered checkpoint's.
    assert re.fullmatch(r"converged: no gain above the \d+\.\d-point noise in val balanced accuracy "
                        rf"since epoch 1 \(2 epochs\); best epoch {summary['best_epoch']}", summary["stop_reason"])
    # The same score every epoch, so the smoothed reading is that score; it carries a real error bar.
    selection = summary["selection"]
    assert selection["validation_rows"] > 0
    assert 0 < selection["val_balanced_accuracy_se"] < 0.2 and 1 <= selection["validation_groups"] <= \
        selection["validation_rows"]
    assert selection["smoothed_balanced_accuracy"] == pytest.approx(selection["val_balanced_accuracy"], abs=0.01)
    assert "epoch 1/≤8:" in completed.stdout and "epoch 4/≤8" not in completed.stdout
    # The recipe `auto` chose is in the summary and the run's params; the stop reason is a run tag.
    assert summary["recipe"]["loss"] == "logit_adjusted" and summary["recipe"]["imbalance_ratio"] >= 3
    run = MlflowClient(mlflow_server).get_run(summary["mlflow_run_id"])
    assert run.data.params["recipe.loss"] == "logit_adjusted" and run.data.params["train.loss"] == "auto"
    assert run.data.tags["resmm.stop_reason"] == summary["stop_reason"]
    assert run.data.metrics["train/epochs_run"] == 3
    client = MlflowClient(mlflow_server)
    for name in ("val/balanced_accuracy_se", "val/smoothed_balanced_accuracy", "val/gain_threshold", "val/groups",
                 "val/balanced_log_loss"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [0, 1, 2], name
    assert "validation_curve.png" in {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id,
                                                                                                "plots")}
