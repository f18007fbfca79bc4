"""The end-to-end training pipeline: scan → validate → Ray Data preprocess → Ray Train DDP → MLflow registration."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

import ray
import torch

from pipelines.ingest import build_split, count_classes, resolve_classes, scan_source
from resmm.config import Config
from resmm.data.batch import PreprocessSpec
from resmm.datasets import demo
from resmm.summary import format_table
from resmm.tracking import plots, registry, runs
from resmm.train.driver import STATE_FILE, fit


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def resolve_data_path(cfg: Config, progress=print) -> str:
    """`data.path`, or the built-in demo dataset (built on first use, then cached)."""
    if cfg.data.path:
        return cfg.data.path
    path = demo.default_path()
    if not demo.is_built(path):
        progress(f"[resmm] data.path not set: building the built-in demo dataset at {path}")
        demo.build(path, progress=progress)
    return str(path)


def connect_ray() -> None:
    """RAY_ADDRESS (set by `ray job submit` too) if given; otherwise a fresh local Ray instance.

    A local instance gets `resmm` and `pipelines` as py_modules, so workers import the very code the driver
    runs, installed or not. Under `ray job submit` the job's own runtime_env (working_dir) provides them.
    """
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        import pipelines
        import resmm

        modules = [str(Path(m.__file__).parent) for m in (resmm, pipelines)]
        ray.init(address="local", runtime_env={"py_modules": modules})


def run_training(cfg: Config, progress=print) -> dict:
    """Train, track and register one model; returns the summary dict."""
    started = time.perf_counter()
    data_url = resolve_data_path(cfg, progress)
    modalities = list(cfg.model.modalities)

    # The contract is checked from the footers before Ray starts: a bad shard fails in seconds.
    progress(f"[resmm] scanning shards under {data_url}")
    train_source = scan_source(data_url, modalities)
    val_source = scan_source(cfg.data.val_path, modalities) if cfg.data.val_path else None
    connect_ray()
    progress(f"[resmm] {len(train_source.shards)} shards, {train_source.num_rows} rows; counting classes")
    class_counts = count_classes(train_source)
    classes = resolve_classes(cfg.data.classes, class_counts)
    spec = PreprocessSpec.from_config(cfg.data, modalities, classes)
    # Inside the workers, resmm's own per-epoch progress lines replace Ray Data's periodic progress dumps.
    ray.data.DataContext.get_current().enable_progress_bars = False

    if val_source is None:  # deterministic hash split of one location
        split = dict(val_fraction=cfg.data.val_fraction, batch_rows=cfg.data.preprocess_batch_rows)
        datasets = {
            "train": build_split(train_source, spec, validation=False, **split),
            "val": build_split(train_source, spec, validation=True, **split),
        }
        expected_train_rows = int(train_source.num_rows * (1 - cfg.data.val_fraction))
    else:
        split = dict(val_fraction=0.0, batch_rows=cfg.data.preprocess_batch_rows)
        datasets = {
            "train": build_split(train_source, spec, validation=None, **split),
            "val": build_split(val_source, spec, validation=None, **split),
        }
        expected_train_rows = train_source.num_rows

    tracking_uri = runs.resolve_tracking_uri()
    lineage = {
        "resmm.data_path": data_url,
        "resmm.git_commit": git_commit(),
        "resmm.config_hash": cfg.digest(),
    }
    run_id = runs.start_run(tracking_uri, cfg.mlflow.experiment, cfg.train.run_name, cfg.flat(), lineage)
    run_name = cfg.train.run_name or f"resmm-{run_id[:12]}"
    progress(f"[resmm] MLflow run {run_id} at {tracking_uri}; Ray Train run '{run_name}'")
    try:
        runs.log_dict(tracking_uri, run_id, cfg.model_dump(mode="json"), "config/resolved_config.json")
        runs.log_dict(
            tracking_uri, run_id,
            {"class_counts": {str(k): v for k, v in class_counts.items()}, "rows": train_source.num_rows,
             "shards": [s.url for s in train_source.shards]},
            "data/profile.json",
        )
        outcome = fit(
            cfg, spec, datasets, run_name=run_name, tracking_uri=tracking_uri, run_id=run_id,
            expected_train_rows=expected_train_rows,
        )
        best = outcome.best_metrics
        figure = plots.confusion_matrix_figure(best["val_confusion_matrix"], classes)
        runs.log_figure(tracking_uri, run_id, figure, "plots/confusion_matrix.png")
        plots.close(figure)

        state = torch.load(Path(outcome.best_checkpoint_path) / STATE_FILE, map_location="cpu", weights_only=True)
        bundle = {"model": cfg.model.model_dump(mode="json"), "spec": dataclasses.asdict(spec)}
        model_uri, version = registry.log_and_register(
            tracking_uri=tracking_uri, run_id=run_id, registered_model=cfg.mlflow.registered_model,
            model_state=state["model"], bundle=bundle,
            tags={**lineage, "resmm.mlflow_run_id": run_id, "resmm.best_epoch": best["epoch"]},
        )
        headline = {k: best[k] for k in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1") if k in best}
        runs.log_metrics(tracking_uri, run_id, {f"best_{k}": v for k, v in headline.items()}, step=best["epoch"])
    except BaseException:
        runs.end_run(tracking_uri, run_id, "FAILED")
        raise
    runs.end_run(tracking_uri, run_id, "FINISHED")

    wall = time.perf_counter() - started
    worker = outcome.worker_return
    summary = {
        "mlflow_run_id": run_id,
        "mlflow_experiment": cfg.mlflow.experiment,
        "mlflow_tracking_uri": tracking_uri,
        "registered_model": cfg.mlflow.registered_model,
        "model_version": version,
        "model_uri": model_uri,
        "ray_train_run_name": run_name,
        "num_workers": cfg.train.num_workers,
        "epochs": cfg.train.epochs,
        "best_epoch": best["epoch"],
        "classes": classes,
        "rows_seen_train": worker.get("rows_seen_train", 0),
        "wall_time_s": round(wall, 2),
        "train_time_s": round(worker.get("train_seconds", 0.0), 2),
        "throughput_samples_per_s": round(worker.get("rows_seen_train", 0) / max(worker.get("train_seconds", 0), 1e-9), 2),
        "metrics": headline,
    }
    progress(format_table(summary))
    return summary
