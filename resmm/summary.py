"""The end-of-run summary: a readable table for people and a JSON file for schedulers."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from resmm.secrets import redact


@dataclass
class TrainingSummary:
    """What one training run produced; `as_dict()` is the summary JSON (`--summary-json`, jobs/retrain.py)."""

    mlflow_run_id: str
    mlflow_experiment: str
    mlflow_tracking_uri: str
    registered_model: str
    model_version: str
    model_uri: str
    data_fingerprint: str
    ray_train_run_name: str
    num_workers: int
    epochs: int  # epochs run; `stop_reason` says why training ended there
    stop_reason: str
    best_epoch: int  # counted from 1, as the console's epoch lines and stop reason count
    start_epoch: int  # > 0: resumed from a checkpoint of an earlier attempt
    restarts: int  # worker-group restarts from the last checkpoint
    recipe: dict  # the imbalance treatment chosen and the profile figure behind it
    lengths: dict  # the `auto` input lengths and why
    classes: list
    rows_seen_train: int
    wall_time_s: float
    train_time_s: float
    throughput_samples_per_s: float
    metrics: dict  # the best epoch's validation accuracy, balanced accuracy, macro-F1
    heads: dict  # the best epoch's per-modality head metrics
    data_profile: dict
    quarantine: dict
    fed_class_counts: dict  # rows fed per class in the last epoch
    robustness: dict
    retrieval: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # the decoded-feature cache: rows decoded, rows cached, where, bytes
    predictor: dict = field(default_factory=dict)  # the chosen final predictor and every candidate's validation score
    # How the choices after training started were made, and how noisy the readings behind them were.
    selection: dict = field(default_factory=dict)
    # Set when training resumed inside an epoch: that epoch (from 1) and the rows it had already trained.
    resumed_within_epoch: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def format_table(summary: dict) -> str:
    metrics = summary.get("metrics", {})
    rows = [
        ("MLflow run", summary.get("mlflow_run_id")),
        ("experiment", summary.get("mlflow_experiment")),
        ("registered model", f"{summary.get('registered_model')} v{summary.get('model_version')}"),
        ("model URI", summary.get("model_uri")),
        ("workers", summary.get("num_workers")),
        ("epochs", summary.get("epochs")),
        ("best epoch", summary.get("best_epoch")),
        ("stopped because", summary.get("stop_reason")),
        ("recipe", " ".join(f"{k}={v}" for k, v in (summary.get("recipe") or {}).items() if k != "reason")),
        ("train rows seen", summary.get("rows_seen_train")),
        ("wall time", f"{summary.get('wall_time_s', 0):.1f} s"),
        ("throughput", f"{summary.get('throughput_samples_per_s', 0):.1f} samples/s"),
    ] + [(name, f"{value:.4f}") for name, value in metrics.items()]
    rows += selection_rows(summary.get("selection") or {})
    rows += predictor_rows(summary.get("predictor") or {})
    rows += pattern_rows(summary.get("robustness") or {})
    quarantine = summary.get("quarantine") or {}
    if quarantine:
        rows.append(("files skipped", len(quarantine.get("files", []))))
        reasons = " ".join(f"{k}:{v}" for k, v in quarantine.get("rows", {}).items())
        rows.append(("rows quarantined", f"{quarantine.get('rows_total', 0)} {reasons}".strip()))
        for title, key in (("modality marked missing", "modalities_marked_missing"), ("cut to input limits", "input_limits")):
            if quarantine.get(key):
                rows.append((title, " ".join(f"{k}:{v}" for k, v in quarantine[key].items())))
        if quarantine.get("location"):
            rows.append(("quarantine file", quarantine["location"]))
    cache = summary.get("cache") or {}
    if "decoded_rows" in cache:
        rows.append(("feature cache", f"{cache['decoded_rows']} rows decoded, {cache['cached_rows']} cached, "
                                      f"{cache['bytes'] / 2**20:.1f} MiB at {cache['location']}"))
    if "restarts" in summary:
        rows.append(("worker-group restarts", summary["restarts"]))
    resumed = summary.get("resumed_within_epoch") or {}
    if resumed:
        rows.append(("resumed within an epoch", f"epoch {resumed['epoch']}, after {resumed['trained_rows']} rows "
                                                "(none trained twice)"))
    if summary.get("fed_class_counts"):
        rows.append(("fed per class (last epoch)", " ".join(f"{k}:{v}" for k, v in summary["fed_class_counts"].items())))
    width = max(len(k) for k, _ in rows)
    lines = ["", "resmm training summary", "-" * (width + 40)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def _score(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def selection_rows(selection: dict) -> list[tuple[str, str]]:
    """The selection protocol, and the best epoch's reading with its error bar."""
    if not selection:
        return []
    return [("selection", selection["protocol"]),
            ("best epoch's reading", f"val balanced acc {_score(selection.get('val_balanced_accuracy'))} "
                                     f"± {_score(selection.get('val_balanced_accuracy_se'))} (bootstrap SE over "
                                     f"{selection.get('validation_groups')} groups of {selection.get('validation_rows')} "
                                     f"rows), smoothed {_score(selection.get('smoothed_balanced_accuracy'))}")]


def predictor_rows(predictor: dict) -> list[tuple[str, str]]:
    """One row per candidate of the final predictor, the chosen one marked."""
    chosen = (predictor.get("chosen") or {}).get("name")
    rows = [("final predictor", chosen)] if chosen else []
    for row in predictor.get("candidates", []):
        weights = " ".join(f"{m}:{w:.4g}" for m, w in row["head_weights"].items() if w)
        detail = f"fused:{row['fused_weight']:.4g} {weights}".strip()
        noise = f"; ± {row['se_vs_fused']:.4f} vs fused" if row.get("se_vs_fused") else ""
        rows.append((f"  val balanced acc {row['candidate']}",
                     f"{_score(row['val_balanced_accuracy'])}  ({detail}; {row['scored_on']}{noise})"
                     + ("  <- chosen" if row["candidate"] == chosen else "")))
    return rows


def pattern_rows(robustness: dict) -> list[tuple[str, str]]:
    """Balanced accuracy per presence pattern: the fused head's, and the chosen predictor's beside it."""
    fused, chosen = robustness.get("patterns_balanced") or {}, robustness.get("patterns_balanced_chosen") or {}
    name = robustness.get("predictor", "fused")
    return [(f"balanced acc with {pattern}",
             f"fused {_score(value)}" + (f", {name} {_score(chosen.get(pattern))}" if chosen else ""))
            for pattern, value in fused.items()]


def write_json(summary: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(redact(summary), indent=2, sort_keys=True))
