"""The end-to-end training pipeline: scan → validate → Ray Data preprocess → Ray Train DDP → MLflow registration."""
from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import time
from pathlib import Path

import ray
import torch

from pipelines.ingest import build_split, scan_source
from pipelines.validation import Rules, Validation, validate_source, write_quarantine
from resmm.config import Config
from resmm.contract import resolve_classes
from resmm.data.batch import PreprocessSpec
from resmm.data.lengths import resolve_lengths
from resmm.datasets import demo
from resmm.fingerprint import data_fingerprint
from resmm.models.builders import build_model
from resmm.quarantine import QuarantineReport
from resmm import console
from resmm.console import progress_bar, say
from resmm.summary import format_table
from resmm.tracking import lineage as lineage_dataset
from resmm.tracking import plots, registry, runs
from resmm.train.budget import Budget
from resmm.train.driver import STATE_FILE, configure_execution, fit, storage_uri
from resmm.train.recipe import apply_recipe, choose_recipe
from resmm.train.retrieval import flat_metrics, retrieval_recall
from resmm.train.robustness import mean_pattern_accuracy, robustness_report


def git_commit() -> str:
    """The commit of the running code: $RESMM_GIT_COMMIT where it is set (the image has no .git), else git's."""
    if os.environ.get("RESMM_GIT_COMMIT"):
        return os.environ["RESMM_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def resolve_data_path(cfg: Config, progress=say) -> str:
    """`data.path`, or the built-in demo dataset (built on first use, then cached)."""
    return demo.path_or_default(cfg.data.path, progress)


def connect_ray() -> None:
    """RAY_ADDRESS (set by `ray job submit` too) if given; otherwise a fresh local Ray instance.

    A local instance gets `resmm` and `pipelines` as py_modules, so workers import the very code the driver
    runs, installed or not. Under `ray job submit` the job's own runtime_env (working_dir) provides them.
    The frameworks' INFO logs and the workers' output stay in Ray's log directory unless RESMM_LOG_LEVEL=INFO.
    """
    if ray.is_initialized():
        return
    options = {"log_to_driver": console.verbose(), "logging_level": console.framework_log_level()}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        context = ray.init(address=address, **options)
    else:
        import pipelines
        import resmm

        use_local_token()
        modules = [str(Path(m.__file__).parent) for m in (resmm, pipelines)]
        context = ray.init(address="local", runtime_env={"py_modules": modules}, **options)
    console.quiet_frameworks()
    if not console.verbose():
        say(f"[resmm] Ray's logs: {context.address_info['session_dir']}/logs "
            f"(set {console.LOG_LEVEL_ENV}=INFO to see them here)")


def use_local_token() -> None:
    """Token authentication for a local instance, as on every Ray cluster. Without a token of the user's own
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), the instance gets a fresh one that lives in this
    process's environment only, so a local run writes nothing to ~/.ray. RAY_AUTH_MODE=disabled is respected."""
    if os.environ.get("RAY_AUTH_MODE", "token") != "token":
        return
    has_token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                 or (Path.home() / ".ray" / "auth_token").exists())
    if not has_token:
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    if os.environ.get("RAY_AUTH_MODE") != "token":
        # Ray's own switch: sets RAY_AUTH_MODE and reloads the config Ray read at import. Choosing the mode
        # explicitly is also what keeps Ray from warning that it turned token authentication on by default.
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()


def counted(batches, bar):
    """Pass tensor batches through, advancing `bar` by their rows."""
    for batch in batches:
        bar.update(len(batch["label"]))
        yield batch


def hide_ray_data_progress() -> None:
    """resmm draws one bar per stage (validation, each epoch, robustness); Ray Data's own progress, which on a
    non-interactive stdout becomes blocks of log lines every few seconds, would repeat them. The setting
    travels to the workers' ingest with the DataContext."""
    from ray.util.debug import log_once

    ray.data.DataContext.get_current().enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # Ray's notice that its bars are off: this is why


def evaluate_registered_weights(cfg: Config, spec: PreprocessSpec, model_state: dict, val_dataset,
                                val_rows: int) -> tuple[dict, dict]:
    """Robustness report and retrieval recall of the registered weights, streamed over the validation split."""
    network = build_model(cfg.model, spec, cfg.data.impute)
    network.load_state_dict(model_state)
    with progress_bar(val_rows, "robustness") as bar:
        robustness = robustness_report(
            network, counted(val_dataset.iter_torch_batches(batch_size=256), bar), spec.modalities,
            len(spec.classes), seed=cfg.train.seed,
        )
    retrieval = {}
    if cfg.model.retrieval:
        with progress_bar(val_rows, "retrieval") as bar:
            retrieval = retrieval_recall(network, counted(val_dataset.iter_torch_batches(batch_size=256), bar),
                                         spec.modalities)
    return robustness, retrieval


def robustness_rows(report: dict) -> dict:
    """The report as one flat table (setting, modality, missing_rate, accuracy, balanced_accuracy)."""
    rows = {"setting": [], "modality": [], "missing_rate": [], "accuracy": [], "balanced_accuracy": []}
    for pattern, accuracy in report["patterns"].items():
        for key, value in (("setting", "pattern"), ("modality", pattern), ("missing_rate", None),
                           ("accuracy", accuracy), ("balanced_accuracy", report["patterns_balanced"][pattern])):
            rows[key].append(value)
    for modality, curve in report["missing_rate"].items():
        for rate, accuracy in curve.items():
            for key, value in (("setting", "missing_rate"), ("modality", modality), ("missing_rate", float(rate)),
                               ("accuracy", accuracy), ("balanced_accuracy", None)):
                rows[key].append(value)
    return rows


def validate_sources(cfg: Config, modalities: list[str], train_source, val_source, progress) -> dict[str, Validation]:
    """The validation stage over the training location (and a separate validation location, if any)."""
    # Decoding does not depend on the class vocabulary, which may only be known after this pass.
    spec = PreprocessSpec.from_config(cfg.data, modalities, ())
    classes = tuple(cfg.data.classes) if cfg.data.classes else None
    null_label_is_fault = cfg.data.unlabeled_rows == "quarantine"
    checks = {"train": validate_source(
        train_source, spec, Rules(True, null_label_is_fault, classes, None if val_source else cfg.data.val_fraction),
        batch_rows=cfg.data.preprocess_batch_rows, progress=progress, name="train",
    )}
    if val_source is not None:
        checks["val"] = validate_source(val_source, spec, Rules(True, null_label_is_fault, classes, None),
                                        batch_rows=cfg.data.preprocess_batch_rows, progress=progress, name="val")
    for name, check in checks.items():
        report = check.report
        progress(f"[resmm] validation ({name}): {len(report.files)} file(s) skipped, {report.rows_total} row(s) "
                 f"quarantined {dict(report.rows)}, modality marked missing {dict(report.modalities_marked_missing)}, "
                 f"cut to input limits {dict(report.input_limits)}")
    return checks


def record_quarantine(cfg: Config, checks: dict[str, Validation], run_name: str, tracking_uri: str, run_id: str,
                      progress) -> QuarantineReport:
    """Write quarantined rows under the run's storage, log the report to MLflow; returns the merged report."""
    merged = QuarantineReport()
    locations = []
    for name, check in checks.items():
        merged.merge(check.report)
        destination = f"{storage_uri(cfg.train.storage_path)}/{run_name}/quarantine/{name}_rows.parquet"
        written = write_quarantine(check, ["sample_id", "label", *cfg.model.modalities], destination)
        if written:
            progress(f"[resmm] {written} quarantined row(s) with their reasons written to {destination}")
            locations.append(destination)
    merged.location = ", ".join(locations) or None
    runs.log_dict(tracking_uri, run_id, merged.as_summary(), "data/quarantine.json")
    runs.log_metrics(tracking_uri, run_id, {
        "quarantine/files": len(merged.files), "quarantine/rows": merged.rows_total,
        **{f"quarantine/{k}": v for k, v in merged.rows.items()},
        **{f"modality_missing/{k}": v for k, v in merged.modalities_marked_missing.items()},
        **{f"input_limit/{k}": v for k, v in merged.input_limits.items()},
    }, step=0)
    return merged


def run_training(cfg: Config, progress=say, initial_weights: dict | None = None, train_source=None) -> dict:
    """Train, track and register one model; returns the summary dict.

    initial_weights: a state dict to start from (warm start); ignored when a checkpoint of the run exists.
    train_source: the already scanned shards of `data.path` (a retrain fingerprints them first), so that the
    footers are read once and the recorded fingerprint is exactly the one the caller decided on.
    """
    started = time.perf_counter()
    runs.check_tracking_access(runs.resolve_tracking_uri())  # bad credentials fail now, not after training
    data_url = resolve_data_path(cfg, progress)
    modalities = list(cfg.model.modalities)

    # The contract is checked from the footers before Ray starts: a bad shard fails in seconds.
    if train_source is None:
        progress(f"[resmm] scanning shards under {data_url}")
        train_source = scan_source(data_url, modalities)
    val_source = scan_source(cfg.data.val_path, modalities) if cfg.data.val_path else None
    cfg, lengths = resolve_lengths(cfg, train_source.filesystem, [s.path for s in train_source.shards])
    for choice in lengths:
        progress(f"[resmm] {choice.key}={choice.value} ({choice.reason})")
    connect_ray()
    # Driver-side passes (validation, evaluation); Train ingest gets the same through DataConfig.
    configure_execution(ray.data.DataContext.get_current().execution_options, cfg)
    hide_ray_data_progress()
    progress(f"[resmm] {len(train_source.shards)} shards, {train_source.num_rows} rows; validating every row "
             "(files, ids, labels, decodable bytes) before training")
    checks = validate_sources(cfg, modalities, train_source, val_source, progress)
    train_check = checks["train"]
    profile = train_check.train_profile
    classes = resolve_classes(cfg.data.classes, profile.class_counts)
    progress(f"[resmm] profile: {profile.rows} training rows, classes {profile.as_summary()['class_counts']}")
    class_counts = [profile.class_counts.get(c, 0) for c in classes]
    recipe = choose_recipe(cfg, class_counts)
    progress(f"[resmm] recipe: train.loss={recipe.loss}, data.resample={recipe.resample} ({recipe.reason})")
    progress(f"[resmm] budget: {Budget.from_config(cfg.train).describe()}")
    spec = PreprocessSpec.from_config(cfg.data, modalities, classes)

    # (validated source, side of the hash split) for each dataset: one location split by sample_id, or two.
    if val_source is None:
        sides = {"train": (train_check, False), "val": (train_check, True)}
    else:
        sides = {"train": (train_check, None), "val": (checks["val"], None)}
    datasets = {
        name: build_split(check.source, spec, validation=side, val_fraction=cfg.data.val_fraction,
                          batch_rows=cfg.data.preprocess_batch_rows, quarantined=check.quarantined_row_hashes)
        for name, (check, side) in sides.items()
    }

    tracking_uri = runs.resolve_tracking_uri()
    fingerprint = data_fingerprint(train_source.shards)
    lineage = {
        "resmm.data_path": data_url,
        "resmm.data_fingerprint": fingerprint["digest"],
        "resmm.git_commit": git_commit(),
        "resmm.config_hash": cfg.digest(),
    }
    run_id, run_name = runs.start_run(tracking_uri, cfg.mlflow.experiment, cfg.train.run_name,
                                      {**cfg.flat(), **recipe.as_params(),
                                       **{f"auto.{c.key}": c.reason for c in lengths}}, lineage)
    progress(f"[resmm] MLflow run {run_id} at {tracking_uri}; Ray Train run '{run_name}'")
    try:
        quarantine = record_quarantine(cfg, checks, run_name, tracking_uri, run_id, progress)
        runs.log_dict(tracking_uri, run_id, cfg.model_dump(mode="json"), "config/resolved_config.json")
        lineage_dataset.log_training_data(tracking_uri, run_id, data_url, fingerprint)
        runs.log_dict(tracking_uri, run_id, fingerprint, "data/fingerprint.json")
        runs.log_dict(
            tracking_uri, run_id,
            {**profile.as_summary(), "shards": [s.url for s in train_source.shards]},
            "data/profile.json",
        )
        starts_before = runs.worker_group_starts(tracking_uri, run_id)
        outcome = fit(
            apply_recipe(cfg, recipe), spec, datasets, run_name=run_name, tracking_uri=tracking_uri, run_id=run_id,
            class_counts=class_counts, train_rows=profile.rows,
            initial_weights=initial_weights,
        )
        restarts = max(0, runs.worker_group_starts(tracking_uri, run_id) - starts_before - 1)
        if restarts:
            progress(f"[resmm] the worker group was restarted {restarts} time(s) from its last checkpoint")
        best = outcome.best_metrics
        worker = outcome.worker_return
        last_epoch = worker.get("epochs_run", best["epoch"] + 1) - 1
        stop_reason = worker.get("stop_reason", "")
        progress(f"[resmm] stopped after epoch {last_epoch + 1}: {stop_reason}")
        runs.set_tags(tracking_uri, run_id, {"resmm.stop_reason": stop_reason})
        runs.log_metrics(tracking_uri, run_id, {"train/restarts": restarts, "train/epochs_run": last_epoch + 1},
                         step=last_epoch)
        figure = plots.confusion_matrix_figure(best["val_confusion_matrix"], classes)
        runs.log_figure(tracking_uri, run_id, figure, "plots/confusion_matrix.png")
        plots.close(figure)

        state = torch.load(Path(outcome.best_checkpoint_path) / STATE_FILE, map_location="cpu", weights_only=True)
        progress("[resmm] robustness report: every presence pattern and missing rates 0.0-0.9 per modality")
        val_profile = train_check.val_profile if val_source is None else checks["val"].train_profile
        robustness, retrieval = evaluate_registered_weights(cfg, spec, state["model"], datasets["val"],
                                                            val_profile.rows)
        if retrieval:
            runs.log_dict(tracking_uri, run_id, retrieval, "retrieval/recall.json")
            runs.log_metrics(tracking_uri, run_id, flat_metrics(retrieval), step=best["epoch"])
        runs.log_dict(tracking_uri, run_id, robustness, "robustness/report.json")
        runs.log_table(tracking_uri, run_id, robustness_rows(robustness), "robustness/table.json")
        figure = plots.robustness_figure(robustness)
        runs.log_figure(tracking_uri, run_id, figure, "plots/robustness.png")
        plots.close(figure)
        fed = worker.get("fed_class_counts", {})
        runs.log_dict(tracking_uri, run_id, {"fed_class_counts": fed, "epoch": best["epoch"]}, "data/fed_class_counts.json")
        runs.log_metrics(
            tracking_uri, run_id,
            {"robustness/mean_pattern_accuracy": mean_pattern_accuracy(robustness),
             **{f"fed_rows/{c}": n for c, n in fed.items()}},
            step=last_epoch,
        )
        bundle = {"model": cfg.model.model_dump(mode="json"), "spec": dataclasses.asdict(spec),
                  "impute": cfg.data.impute}
        model_uri, version = registry.log_and_register(
            tracking_uri=tracking_uri, run_id=run_id, registered_model=cfg.mlflow.registered_model,
            model_state=state["model"], bundle=bundle,
            tags={**lineage, "resmm.mlflow_run_id": run_id, "resmm.best_epoch": best["epoch"]},
        )
        headline = {k: best[k] for k in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1") if k in best}
        runs.log_metrics(tracking_uri, run_id, {f"best/{k.removeprefix('val_')}": v for k, v in headline.items()},
                         step=best["epoch"])
    except BaseException:
        runs.end_run(tracking_uri, run_id, "FAILED")
        raise
    runs.end_run(tracking_uri, run_id, "FINISHED")

    wall = time.perf_counter() - started
    summary = {
        "mlflow_run_id": run_id,
        "mlflow_experiment": cfg.mlflow.experiment,
        "mlflow_tracking_uri": tracking_uri,
        "registered_model": cfg.mlflow.registered_model,
        "model_version": version,
        "data_fingerprint": fingerprint["digest"],
        "model_uri": model_uri,
        "ray_train_run_name": run_name,
        "num_workers": cfg.train.num_workers,
        "epochs": last_epoch + 1,  # epochs run; `stop_reason` says why training ended there
        "stop_reason": stop_reason,
        "recipe": {"loss": recipe.loss, "resample": recipe.resample,
                   "imbalance_ratio": round(recipe.imbalance_ratio, 3), "reason": recipe.reason},
        "lengths": {c.key: {"value": c.value, "reason": c.reason} for c in lengths},
        "best_epoch": best["epoch"],
        "classes": classes,
        "rows_seen_train": worker.get("rows_seen_train", 0),
        "wall_time_s": round(wall, 2),
        "train_time_s": round(worker.get("train_seconds", 0.0), 2),
        "throughput_samples_per_s": round(worker.get("rows_seen_train", 0) / max(worker.get("train_seconds", 0), 1e-9), 2),
        "metrics": headline,
        "data_profile": profile.as_summary(),
        "quarantine": quarantine.as_summary(),
        "restarts": restarts,
        "start_epoch": worker.get("start_epoch", 0),  # > 0: resumed from a checkpoint of an earlier attempt
        "fed_class_counts": worker.get("fed_class_counts", {}),
        "robustness": robustness,
        "retrieval": retrieval,
        "heads": {k.removeprefix("val_head_"): v for k, v in best.items() if k.startswith("val_head_")},
    }
    progress(format_table(summary))
    return summary
