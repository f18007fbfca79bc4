"""The end-to-end training pipeline, as stages: prepare_data (scan → validate → profile → Ray Data splits) →
record_inputs → train (Ray Train DDP) → evaluate → register, all inside one tracked MLflow run."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
import subprocess
import time
from pathlib import Path

import torch

from pipelines.feature_cache import CacheTarget, decoded_split, read_cached_split
from pipelines.ingest import Source, scan_source
from pipelines.runtime import configure_data_context, connect_ray
from pipelines.validation import Rules, Validation, validate_source, write_quarantine
from resmm.config import Config, ConfigError
from resmm.sources.contract import resolve_classes
from resmm.modalities.spec import PreprocessSpec
from resmm.data.cache import CacheStats, cache_url
from resmm.modalities.transforms import expand_batch
from resmm.data.feed import STALL_MESSAGE, FeedStalled, within_deadline
from resmm.data.lengths import LengthChoice
from resmm.modalities import resolve_lengths
from resmm.datasets import demo
from resmm.sources.fingerprint import data_fingerprint
from resmm.modalities.network import build_model
from resmm.models.pretrained import pretrained_preprocessing
from resmm.sources.quarantine import QuarantineReport
from resmm.console import progress_bar, say
from resmm.summary import TrainingSummary, format_table
from resmm.tracking import lineage as lineage_dataset
from resmm.tracking import plots, registry, runs
from resmm.tracking.runs import TrackedRun
from resmm.train.budget import SMOOTHING_EPOCHS, Budget
from resmm.train.checkpoint import STATE_FILE
from resmm.train.driver import fit, storage_uri
from resmm.train.recipe import Recipe, apply_recipe, choose_recipe
from resmm.train.retrieval import flat_metrics, retrieval_recall
from resmm.train.predictor_choice import PredictorChoice, ValidationOutputs, choose_predictor
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


def counted(batches, bar, spec: PreprocessSpec):
    """Model-input tensor batches (cached features widened), advancing `bar` by their rows."""
    for batch in batches:
        bar.update(len(batch["label"]))
        yield expand_batch(batch, spec)


@dataclass
class Evaluation:
    """The registered weights scored on the validation split: the predictor chosen there, the robustness report
    (fused head and chosen predictor) and retrieval recall; and the pretrained towers' preprocessing of the
    network that was scored, for the bundle."""

    choice: PredictorChoice
    robustness: dict
    retrieval: dict
    pretrained: dict


def evaluate_registered_weights(cfg: Config, spec: PreprocessSpec, model_state: dict, val_dataset,
                                val_rows: int) -> Evaluation:
    """Choose the final predictor, then report robustness and retrieval recall, streamed over the validation split."""
    network = build_model(cfg.model, spec, cfg.data.impute)
    network.load_state_dict(model_state)

    def batches(bar):
        stall = 60 * cfg.data.stall_timeout_minutes if cfg.data.stall_timeout_minutes else None
        return counted(within_deadline(val_dataset.iter_torch_batches(batch_size=256), stall), bar, spec)

    with progress_bar(val_rows, "predictor choice") as bar:
        choice = choose_predictor(ValidationOutputs.collect(network, batches(bar)), len(spec.classes),
                                  seed=cfg.train.seed)
    with progress_bar(val_rows, "robustness") as bar:
        robustness = robustness_report(network, batches(bar), spec.modalities, len(spec.classes),
                                       seed=cfg.train.seed, predictor=choice.chosen)
    retrieval = {}
    if cfg.model.retrieval:
        with progress_bar(val_rows, "retrieval") as bar:
            retrieval = retrieval_recall(network, batches(bar), spec.modalities)
    return Evaluation(choice, robustness, retrieval, pretrained_preprocessing(network))


def robustness_rows(report: dict) -> dict:
    """The report as one flat table (setting, modality, missing_rate, accuracy, balanced_accuracy)."""
    rows = {"setting": [], "modality": [], "missing_rate": [], "accuracy": [], "balanced_accuracy": [],
            "chosen_balanced_accuracy": []}
    chosen = report.get("patterns_balanced_chosen", {})
    for pattern, accuracy in report["patterns"].items():
        for key, value in (("setting", "pattern"), ("modality", pattern), ("missing_rate", None),
                           ("accuracy", accuracy), ("balanced_accuracy", report["patterns_balanced"][pattern]),
                           ("chosen_balanced_accuracy", chosen.get(pattern))):
            rows[key].append(value)
    for modality, curve in report["missing_rate"].items():
        for rate, accuracy in curve.items():
            for key, value in (("setting", "missing_rate"), ("modality", modality), ("missing_rate", float(rate)),
                               ("accuracy", accuracy), ("balanced_accuracy", None), ("chosen_balanced_accuracy", None)):
                rows[key].append(value)
    return rows


def validate_sources(cfg: Config, modalities: list[str], train_source, val_source, progress) -> dict[str, Validation]:
    """The validation stage over the training location (and a separate validation location, if any)."""
    # Decoding does not depend on the class vocabulary, which may only be known after this pass.
    spec = PreprocessSpec.from_config(cfg.data, modalities, ())
    classes = tuple(cfg.data.classes) if cfg.data.classes else None
    null_label_is_fault = cfg.data.unlabeled_rows == "quarantine"
    cache = cache_target(cfg)
    checks = {"train": validate_source(
        train_source, spec, Rules(True, null_label_is_fault, classes, None if val_source else cfg.data.val_fraction,
                                  cfg.data.group_column),
        batch_rows=cfg.data.preprocess_batch_rows, progress=progress, name="train", cache=cache,
    )}
    if val_source is not None:
        checks["val"] = validate_source(val_source, spec, Rules(True, null_label_is_fault, classes, None),
                                        batch_rows=cfg.data.preprocess_batch_rows, progress=progress, name="val",
                                        cache=cache)
    for name, check in checks.items():
        report = check.report
        progress(f"[resmm] validation ({name}): {len(report.files)} file(s) skipped, {report.rows_total} row(s) "
                 f"quarantined {dict(report.rows)}, modality marked missing {dict(report.modalities_marked_missing)}, "
                 f"cut to input limits {dict(report.input_limits)}")
        if check.cache is not None:
            stats = check.cache
            progress(f"[resmm] feature cache ({name}): {stats.decoded_rows} row(s) decoded into "
                     f"{stats.entries_built} new entr{'y' if stats.entries_built == 1 else 'ies'} "
                     f"({stats.entries_rebuilt} rebuilt as corrupt), {stats.cached_rows} row(s) read from "
                     f"{stats.entries_reused} cached, {stats.bytes / 2**20:.1f} MiB at {stats.location}")
    return checks


def cache_target(cfg: Config) -> CacheTarget | None:
    """Where the run's decoded-feature cache lives (None: data.cache=off)."""
    if cfg.data.cache == "off":
        return None
    return CacheTarget.at(cache_url(cfg))


def cache_summary(checks: dict[str, Validation]) -> dict:
    """The run's cache report: every validated source together (the summary's and MLflow's `cache`)."""
    merged = None
    for check in checks.values():
        if check.cache is None:
            continue
        if merged is None:
            merged = CacheStats(location=check.cache.location)
        merged.merge(check.cache)
    return merged.as_summary() if merged else {"enabled": False}


def record_quarantine(cfg: Config, checks: dict[str, Validation], run: TrackedRun, progress) -> QuarantineReport:
    """Write quarantined rows under the run's storage, log the report to MLflow; returns the merged report."""
    merged = QuarantineReport()
    locations = []
    for name, check in checks.items():
        merged.merge(check.report)
        destination = f"{storage_uri(cfg.train.storage_path)}/{run.run_name}/quarantine/{name}_rows.parquet"
        written = write_quarantine(check, ["sample_id", "label", *cfg.model.modalities], destination)
        if written:
            progress(f"[resmm] {written} quarantined row(s) with their reasons written to {destination}")
            locations.append(destination)
    merged.location = ", ".join(locations) or None
    run.log_dict(merged.as_summary(), "data/quarantine.json")
    run.log_metrics({
        "quarantine/files": len(merged.files), "quarantine/rows": merged.rows_total,
        **{f"quarantine/{k}": v for k, v in merged.rows.items()},
        **{f"modality_missing/{k}": v for k, v in merged.modalities_marked_missing.items()},
        **{f"input_limit/{k}": v for k, v in merged.input_limits.items()},
    }, step=0)
    return merged


@dataclass
class PreparedData:
    """Everything known about the data before training: validated sources, profile, recipe, Ray datasets."""

    cfg: Config  # the run's config with `auto` lengths resolved (the recipe is applied at fit time)
    url: str
    train_source: Source
    checks: dict[str, Validation]  # "train", and "val" when data.val_path is set
    lengths: list[LengthChoice]
    classes: list[str]
    class_counts: list[int]  # aligned with classes
    recipe: Recipe
    spec: PreprocessSpec
    datasets: dict  # "train" and "val" Ray datasets, streaming
    fingerprint: dict
    lineage: dict  # data path, fingerprint, git commit, config hash: run tags and registered-version tags

    @property
    def profile(self):
        return self.checks["train"].train_profile

    @property
    def val_rows(self) -> int:
        if "val" in self.checks:
            return self.checks["val"].train_profile.rows
        return self.checks["train"].val_profile.rows



@dataclass
class Trained:
    """What Ray Train returned, read back on the driver."""

    best: dict  # the best epoch's validation metrics, confusion matrix included
    model_state: dict  # the best checkpoint's weights
    worker: dict  # rank 0's return: rows seen, train seconds, start epoch, stop reason, fed class counts
    restarts: int
    epochs_run: int
    stop_reason: str


def check_model_builds(cfg: Config, modalities: list[str]) -> None:
    """Build the network once on the driver, before any data is read: an encoder that cannot be built (tower
    files missing, a ViT patch that does not tile the image, a tokenizer not found) is a one-line config error
    in seconds, not a traceback from every training worker."""
    try:
        build_model(cfg.model, PreprocessSpec.from_config(cfg.data, modalities, ["a", "b"]), cfg.data.impute)
    except ValueError as exc:
        raise ConfigError(f"config error: model: {str(exc).splitlines()[0]}") from None


def prepare_data(cfg: Config, progress=say, train_source: Source | None = None) -> PreparedData:
    """Scan, check and profile the shards, choose the recipe, and plan the streaming splits.

    The contract is checked from the footers before Ray starts, so a bad shard fails in seconds.
    train_source: the already scanned shards of `data.path` (a retrain fingerprints them first).
    """
    data_url = resolve_data_path(cfg, progress)
    modalities = list(cfg.model.modalities)
    if train_source is None:
        progress(f"[resmm] scanning shards under {data_url}")
        train_source = scan_source(data_url, modalities)
    val_source = scan_source(cfg.data.val_path, modalities) if cfg.data.val_path else None
    cfg, lengths = resolve_lengths(cfg, train_source.filesystem, [s.path for s in train_source.shards])
    for choice in lengths:
        progress(f"[resmm] {choice.key}={choice.value} ({choice.reason})")
    check_model_builds(cfg, modalities)
    connect_ray()
    configure_data_context(cfg)  # driver-side passes; Train ingest gets the same through DataConfig
    progress(f"[resmm] {len(train_source.shards)} shards, {train_source.num_rows} rows; validating every row "
             "(files, ids, labels, decodable bytes) before training")
    checks = validate_sources(cfg, modalities, train_source, val_source, progress)
    profile = checks["train"].train_profile
    classes = resolve_classes(cfg.data.classes, profile.class_counts)
    progress(f"[resmm] profile: {profile.rows} training rows, classes {profile.as_summary()['class_counts']}")
    class_counts = [profile.class_counts.get(c, 0) for c in classes]
    recipe = choose_recipe(cfg, class_counts)
    progress(f"[resmm] recipe: train.loss={recipe.loss}, data.resample={recipe.resample} ({recipe.reason})")
    progress(f"[resmm] budget: {Budget.from_config(cfg.train).describe()}")
    spec = PreprocessSpec.from_config(cfg.data, modalities, classes)
    fingerprint = data_fingerprint(train_source.shards)
    lineage = {"resmm.data_path": data_url, "resmm.data_fingerprint": fingerprint["digest"],
               "resmm.git_commit": git_commit(), "resmm.config_hash": cfg.digest()}
    return PreparedData(cfg, data_url, train_source, checks, lengths, classes, class_counts, recipe, spec,
                        split_datasets(cfg, spec, checks), fingerprint, lineage)


def split_datasets(cfg: Config, spec: PreprocessSpec, checks: dict[str, Validation]) -> dict:
    """The streaming train and val datasets: one location split by a hash of each row's group (else sample_id),
    or two locations."""
    if "val" in checks:
        sides = {"train": (checks["train"], None), "val": (checks["val"], None)}
    else:
        sides = {"train": (checks["train"], False), "val": (checks["train"], True)}
    return {
        name: (decoded_split(check.source, spec, validation=side, val_fraction=cfg.data.val_fraction,
                             batch_rows=cfg.data.preprocess_batch_rows, group_column=cfg.data.group_column,
                             quarantined=check.quarantined_row_hashes)
               if check.entries is None else
               read_cached_split(list(check.entries), check.cache.location, spec, validation=side,
                                 val_fraction=cfg.data.val_fraction, quarantined=check.quarantined_row_hashes))
        for name, (check, side) in sides.items()
    }


def record_inputs(run: TrackedRun, data: PreparedData, progress) -> QuarantineReport:
    """Quarantine, resolved config, lineage, fingerprint and profile, logged before training starts."""
    quarantine = record_quarantine(data.cfg, data.checks, run, progress)
    cache = cache_summary(data.checks)
    run.log_dict(cache, "data/cache.json")
    if "decoded_rows" in cache:
        run.log_metrics({"cache/decoded_rows": cache["decoded_rows"], "cache/cached_rows": cache["cached_rows"],
                         "cache/bytes": cache["bytes"], "cache/rebuilt_corrupt": cache["entries"]["rebuilt_corrupt"]},
                        step=0)
    run.log_dict(data.cfg.model_dump(mode="json"), "config/resolved_config.json")
    lineage_dataset.log_training_data(run.tracking_uri, run.run_id, data.url, data.fingerprint)
    run.log_dict(data.fingerprint, "data/fingerprint.json")
    run.log_dict({**data.profile.as_summary(), "shards": [s.url for s in data.train_source.shards]},
                 "data/profile.json")
    return quarantine


def train(run: TrackedRun, data: PreparedData, initial_weights: dict | None, progress) -> Trained:
    """Ray Train DDP to the end of the budget; logs why it stopped, restarts and the confusion matrix."""
    starts_before = runs.worker_group_starts(run.tracking_uri, run.run_id)
    try:
        outcome = fit(
            apply_recipe(data.cfg, data.recipe), data.spec, data.datasets, run_name=run.run_name,
            tracking_uri=run.tracking_uri, run_id=run.run_id, class_counts=data.class_counts,
            train_rows=data.profile.rows, initial_weights=initial_weights,
        )
    except Exception as exc:  # Ray Train's TrainingFailedError carries the workers' errors as text
        stalled = STALL_MESSAGE.split("{", 1)[0]
        if stalled not in str(exc):
            raise
        minutes = data.cfg.data.stall_timeout_minutes
        raise FeedStalled(f"training stopped: {STALL_MESSAGE.format(minutes=minutes)}") from None
    restarts = max(0, runs.worker_group_starts(run.tracking_uri, run.run_id) - starts_before - 1)
    if restarts:
        progress(f"[resmm] the worker group was restarted {restarts} time(s) from its last checkpoint")
    best, worker = outcome.best_metrics, outcome.worker_return
    epochs_run = worker.get("epochs_run", best["epoch"] + 1)
    stop_reason = worker.get("stop_reason", "")
    progress(f"[resmm] stopped after epoch {epochs_run}: {stop_reason}")
    run.set_tags({"resmm.stop_reason": stop_reason})
    run.log_metrics({"train/restarts": restarts, "train/epochs_run": epochs_run}, step=epochs_run - 1)
    run.log_figure(plots.confusion_matrix_figure(best["val_confusion_matrix"], data.classes),
                   "plots/confusion_matrix.png")
    curves = runs.epoch_metric_history(run.tracking_uri, run.run_id, ["val_balanced_accuracy",
                                                                      "val_balanced_accuracy_se",
                                                                      "val_smoothed_balanced_accuracy"])
    run.log_figure(plots.validation_curve_figure(curves, best["epoch"], stop_reason), "plots/validation_curve.png")
    state = torch.load(Path(outcome.best_checkpoint_path) / STATE_FILE, map_location="cpu", weights_only=True)
    return Trained(best, state["model"], worker, restarts, epochs_run, stop_reason)


def evaluate(run: TrackedRun, data: PreparedData, trained: Trained, progress) -> Evaluation:
    """Predictor choice, robustness (and retrieval) of the best weights over the validation split, with tables
    and plots."""
    progress("[resmm] choosing the final predictor on the validation split; robustness report: every presence "
             "pattern and missing rates 0.0-0.9 per modality")
    evaluation = evaluate_registered_weights(data.cfg, data.spec, trained.model_state, data.datasets["val"],
                                             data.val_rows)
    record_choice(run, evaluation.choice, trained.best["epoch"])
    robustness, retrieval = evaluation.robustness, evaluation.retrieval
    if retrieval:
        run.log_dict(retrieval, "retrieval/recall.json")
        run.log_metrics(flat_metrics(retrieval), step=trained.best["epoch"])
    run.log_dict(robustness, "robustness/report.json")
    run.log_table(robustness_rows(robustness), "robustness/table.json")
    run.log_figure(plots.robustness_figure(robustness), "plots/robustness.png")
    fed = trained.worker.get("fed_class_counts", {})
    run.log_dict({"fed_class_counts": fed, "epoch": trained.best["epoch"]}, "data/fed_class_counts.json")
    run.log_metrics({"robustness/mean_pattern_accuracy": mean_pattern_accuracy(robustness),
                     **{f"fed_rows/{c}": n for c, n in fed.items()}}, step=trained.epochs_run - 1)
    return evaluation


def record_choice(run: TrackedRun, choice: PredictorChoice, best_epoch: int) -> None:
    """The chosen predictor as params, every candidate's validation score as a table and metrics."""
    chosen = choice.chosen
    run.log_params({"predictor.name": chosen.name, "predictor.fused_weight": round(chosen.fused, 4),
                    **{f"predictor.head_weight.{m}": round(w, 4) for m, w in chosen.heads.items()}})
    run.log_table({key: [row[key] if key != "head_weights" else json.dumps(row[key]) for row in choice.table]
                   for key in (choice.table[0] if choice.table else {})}, "predictor/candidates.json")
    # log_metrics makes names MLflow takes: fused+late:equal is logged as predictor/fused_late:equal/...
    run.log_metrics({f"predictor/{row['candidate']}/val_balanced_accuracy":
                     row["val_balanced_accuracy"] for row in choice.table}, step=best_epoch)


def register(run: TrackedRun, data: PreparedData, trained: Trained, evaluation: Evaluation) -> tuple[str, str, dict]:
    """Log the pyfunc model (with the predictor chosen on validation) and register it; returns (model URI,
    version, the headline metrics)."""
    cfg, predictor = data.cfg, evaluation.choice.chosen
    bundle = {"model": cfg.model.model_dump(mode="json"), "spec": data.spec.to_dict(),
              "impute": cfg.data.impute, "predictor": predictor.as_dict(), "pretrained": evaluation.pretrained}
    model_uri, version = registry.log_and_register(
        tracking_uri=run.tracking_uri, run_id=run.run_id, registered_model=cfg.mlflow.registered_model,
        model_state=trained.model_state, bundle=bundle,
        tags={**data.lineage, "resmm.mlflow_run_id": run.run_id, "resmm.best_epoch": trained.best["epoch"] + 1,
              "resmm.predictor": predictor.name},
    )
    best = trained.best
    headline = {k: best[k] for k in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1") if k in best}
    run.log_metrics({f"best/{k.removeprefix('val_')}": v for k, v in headline.items()}, step=best["epoch"])
    return model_uri, version, headline


def run_training(cfg: Config, progress=say, initial_weights: dict | None = None,
                 train_source: Source | None = None) -> dict:
    """Train, track and register one model; returns the summary dict (resmm.summary.TrainingSummary).

    initial_weights: a state dict to start from (warm start); ignored when a checkpoint of the run exists.
    train_source: the already scanned shards of `data.path` (a retrain fingerprints them first), so that the
    footers are read once and the recorded fingerprint is exactly the one the caller decided on.
    """
    started = time.perf_counter()
    tracking_uri = runs.resolve_tracking_uri()
    runs.check_tracking_access(tracking_uri)  # bad credentials fail now, not after training
    data = prepare_data(cfg, progress, train_source)
    params = {**data.cfg.flat(), **data.recipe.as_params(), **{f"auto.{c.key}": c.reason for c in data.lengths}}
    key = runs.run_key(data.cfg.digest(), data.fingerprint["digest"])
    with runs.tracked_run(tracking_uri, cfg.mlflow.experiment, cfg.train.run_name, params,
                          data.lineage, key) as run:
        progress(f"[resmm] MLflow run {run.run_id} at {tracking_uri}; Ray Train run '{run.run_name}'")
        quarantine = record_inputs(run, data, progress)
        trained = train(run, data, initial_weights, progress)
        evaluation = evaluate(run, data, trained, progress)
        model_uri, version, headline = register(run, data, trained, evaluation)
    summary = summarise(data, run, trained, started, model_uri=model_uri, model_version=version,
                        metrics=headline, quarantine=quarantine.as_summary(), robustness=evaluation.robustness,
                        retrieval=evaluation.retrieval, cache=cache_summary(data.checks),
                        predictor=evaluation.choice.as_summary())
    progress(format_table(summary))
    return summary


def summarise(data: PreparedData, run: TrackedRun, trained: Trained, started: float, **results) -> dict:
    worker, recipe = trained.worker, data.recipe
    rows_seen, train_seconds = worker.get("rows_seen_train", 0), worker.get("train_seconds", 0.0)
    return TrainingSummary(
        mlflow_run_id=run.run_id, mlflow_experiment=data.cfg.mlflow.experiment,
        mlflow_tracking_uri=run.tracking_uri, registered_model=data.cfg.mlflow.registered_model,
        data_fingerprint=data.fingerprint["digest"], ray_train_run_name=run.run_name,
        num_workers=data.cfg.train.num_workers, epochs=trained.epochs_run, stop_reason=trained.stop_reason,
        best_epoch=trained.best["epoch"] + 1, start_epoch=worker.get("start_epoch", 0), restarts=trained.restarts,
        recipe={"loss": recipe.loss, "resample": recipe.resample,
                "imbalance_ratio": round(recipe.imbalance_ratio, 3), "reason": recipe.reason},
        lengths={c.key: {"value": c.value, "reason": c.reason} for c in data.lengths},
        classes=data.classes, rows_seen_train=rows_seen, wall_time_s=round(time.perf_counter() - started, 2),
        train_time_s=round(train_seconds, 2),
        throughput_samples_per_s=round(rows_seen / max(train_seconds, 1e-9), 2),
        heads={k.removeprefix("val_head_"): v for k, v in trained.best.items() if k.startswith("val_head_")},
        selection=selection_protocol(data.cfg, trained.best),
        data_profile=data.profile.as_summary(), fed_class_counts=worker.get("fed_class_counts", {}),
        resumed_within_epoch=worker.get("resumed_within_epoch", {}), **results,
    ).as_dict()


def selection_protocol(cfg: Config, best: dict) -> dict:
    """Which protocol chose the epoch, the checkpoint and the predictor, and the best epoch's reading with its
    bootstrap standard error (the summary's `selection`)."""
    budget = (f"train.epochs={cfg.train.epochs}" if cfg.train.epochs is not None else
              f"stop when neither a reading nor the {SMOOTHING_EPOCHS}-epoch smoothed curve gains above its bootstrap "
              "noise for "
              f"{cfg.train.patience} epochs, after at least {cfg.train.min_steps} steps")
    return {"protocol": f"one validation split ({budget}; the latest checkpoint within one standard error of the "
                        "best reading; predictor by the one-standard-error rule), groups resampled by the bootstrap",
            "validation_rows": best.get("val_rows"), "validation_groups": best.get("val_groups"),
            "val_balanced_accuracy": best.get("val_balanced_accuracy"),
            "val_balanced_accuracy_se": best.get("val_balanced_accuracy_se"),
            "smoothed_balanced_accuracy": best.get("val_smoothed_balanced_accuracy")}
