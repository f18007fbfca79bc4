"""The end-of-run summary: a readable table for people and a JSON file for schedulers."""
from __future__ import annotations

import json
from pathlib import Path


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
        ("train rows seen", summary.get("rows_seen_train")),
        ("wall time", f"{summary.get('wall_time_s', 0):.1f} s"),
        ("throughput", f"{summary.get('throughput_samples_per_s', 0):.1f} samples/s"),
    ] + [(name, f"{value:.4f}") for name, value in metrics.items()]
    robustness = summary.get("robustness") or {}
    for pattern, accuracy in (robustness.get("patterns") or {}).items():
        rows.append((f"accuracy with {pattern}", "n/a" if accuracy is None else f"{accuracy:.4f}"))
    if summary.get("fed_class_counts"):
        rows.append(("fed per class (last epoch)", " ".join(f"{k}:{v}" for k, v in summary["fed_class_counts"].items())))
    width = max(len(k) for k, _ in rows)
    lines = ["", "resmm training summary", "-" * (width + 40)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def write_json(summary: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True))
