"""A grid of training runs on the same data with fixed seeds, tabulated side by side (markdown + JSON)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from pipelines.training import run_training
from resmm.config import ConfigError, load_config
from resmm.train.robustness import mean_pattern_accuracy


def load_grid(path: str | Path) -> list[dict]:
    if not Path(path).is_file():
        raise ConfigError(f"config error: grid file '{path}' does not exist")
    grid = yaml.safe_load(Path(path).read_text())
    if not isinstance(grid, list) or not all(isinstance(g, dict) and "name" in g for g in grid):
        raise ConfigError(f"config error: grid '{path}' must be a list of {{name, overrides}} entries")
    return grid


def run_grid(grid: list[dict], base_config: str | None, base_overrides: list[str], progress=print) -> list[dict]:
    """Train every setting (base config + base overrides + the setting's overrides) and collect its scores."""
    configs = [(entry["name"], load_config(base_config, [*base_overrides, *entry.get("overrides", [])]))
               for entry in grid]  # validate the whole grid before the first run starts
    rows = []
    for index, (name, cfg) in enumerate(configs, 1):
        progress(f"[compare] {index}/{len(configs)}: {name}")
        started = time.perf_counter()
        # The per-run chatter is muted here; the workers' epoch lines still reach the console through Ray.
        summary = run_training(cfg, progress=lambda _line: None)
        rows.append({
            "name": name,
            "modalities": "+".join(cfg.model.modalities),
            "fusion": cfg.model.fusion if len(cfg.model.modalities) > 1 else "-",
            "val_accuracy": summary["metrics"].get("val_accuracy"),
            "val_balanced_accuracy": summary["metrics"].get("val_balanced_accuracy"),
            "val_macro_f1": summary["metrics"].get("val_macro_f1"),
            "robustness_mean_pattern_accuracy": mean_pattern_accuracy(summary["robustness"]),
            "robustness": summary["robustness"],
            "wall_time_s": round(time.perf_counter() - started, 1),
            "mlflow_run_id": summary["mlflow_run_id"],
            "config": cfg.flat(),
        })
        progress(f"[compare] {name}: balanced accuracy {rows[-1]['val_balanced_accuracy']:.4f}")
    return rows


def markdown_table(rows: list[dict]) -> str:
    header = ("| setting | modalities | fusion | balanced acc | macro-F1 | accuracy | robustness (mean over "
              "patterns) | acc, 50% of one modality missing (img / txt / aud) | wall s |")
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        half = row["robustness"]["missing_rate"]
        missing = " / ".join(f"{half[m]['0.5']:.3f}" if m in half else "-" for m in ("image", "text", "audio"))
        lines.append(
            f"| {row['name']} | {row['modalities']} | {row['fusion']} | {row['val_balanced_accuracy']:.4f} | "
            f"{row['val_macro_f1']:.4f} | {row['val_accuracy']:.4f} | {row['robustness_mean_pattern_accuracy']:.4f} "
            f"| {missing} | {row['wall_time_s']:.0f} |"
        )
    return "\n".join(lines)


def write_results(rows: list[dict], out_stem: str | Path) -> tuple[Path, Path]:
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_stem.with_suffix(".json"), out_stem.with_suffix(".md")
    json_path.write_text(json.dumps(rows, indent=2))
    md_path.write_text(markdown_table(rows) + "\n")
    return json_path, md_path
