"""A grid of training runs on the same data with fixed seeds, tabulated side by side (markdown + JSON), with the
hand-written reference recipe (resmm.baselines.reference) beside them."""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from pipelines.training import run_training
from resmm.baselines.reference import EPOCHS, train_reference
from resmm.config import ConfigError, load_config
from resmm.modalities import MODALITIES
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
            "val_balanced_accuracy_se": (summary.get("selection") or {}).get("val_balanced_accuracy_se"),
            "val_macro_f1": summary["metrics"].get("val_macro_f1"),
            **predictor_columns(summary.get("predictor") or {}),
            "robustness_mean_pattern_accuracy": mean_pattern_accuracy(summary["robustness"]),
            "robustness": summary["robustness"],
            "wall_time_s": round(time.perf_counter() - started, 1),
            "mlflow_run_id": summary["mlflow_run_id"],
            "model_uri": f"models:/{summary['registered_model']}/{summary['model_version']}",
            "predictor_candidates": (summary.get("predictor") or {}).get("candidates", []),
            "epochs": summary["epochs"],
            "best_epoch": summary["best_epoch"],
            "config": cfg.flat(),
        })
        progress(f"[compare] {name}: balanced accuracy {rows[-1]['val_balanced_accuracy']:.4f}")
    return rows


def predictor_columns(predictor: dict) -> dict:
    """The chosen final predictor and the best single head, each with its validation balanced accuracy."""
    candidates = {row["candidate"]: row["val_balanced_accuracy"] for row in predictor.get("candidates", [])}
    chosen = (predictor.get("chosen") or {}).get("name")
    heads = {name: score for name, score in candidates.items() if name.startswith("head:")}
    best_head = max(heads, key=heads.get) if heads else None
    return {"predictor": chosen, "predictor_val_balanced_accuracy": candidates.get(chosen),
            "best_head": best_head, "best_head_val_balanced_accuracy": heads.get(best_head)}


def run_reference(base_config: str | None, base_overrides: list[str], epochs: int = EPOCHS,
                  progress=print) -> list[dict]:
    """The reference recipe on the base config's data, decoding and split, as rows beside the grid's."""
    cfg = load_config(base_config, base_overrides)
    progress(f"[compare] reference: one model per modality, {epochs} epochs each, late fusion")
    result = train_reference(cfg, epochs=epochs, progress=progress)
    rows = [
        reference_row(f"reference: {MODALITIES[m].reference.name}", m, "-", scores, scores["train_time_s"], cfg,
                      all_rows=scores["all_rows"], train_rows=scores["train_rows"])
        for m, scores in result["unimodal"].items()
    ]
    # resmm's robustness patterns in the same convention: every validation row, only the pattern's models.
    robustness = {
        "patterns": {p: s["accuracy"] for p, s in result["patterns"].items()},
        "patterns_balanced": {p: s["balanced_accuracy"] for p, s in result["patterns"].items()},
        "missing_rate": {},
        "rows": result["val_rows"],
    }
    rows.append(reference_row(
        "reference: late fusion", "+".join(result["unimodal"]), "late (sum of log-softmax)", result["late_fusion"],
        result["wall_time_s"], cfg, robustness=robustness, pairs=result["pairs"], epochs=result["epochs"],
        headline=result["headline"],
    ))
    progress(f"[compare] reference: late fusion balanced accuracy {result['late_fusion']['balanced_accuracy']:.4f}")
    return rows


def reference_row(name: str, modalities: str, fusion: str, scores: dict, wall_time_s: float, cfg,
                  robustness: dict | None = None, **extra) -> dict:
    return {
        "name": name,
        "modalities": modalities,
        "fusion": fusion,
        "val_accuracy": scores["accuracy"],
        "val_balanced_accuracy": scores["balanced_accuracy"],
        "val_macro_f1": scores["macro_f1"],
        "val_rows": scores["rows"],
        "robustness_mean_pattern_accuracy": mean_pattern_accuracy(robustness) if robustness else None,
        "robustness": robustness,
        "wall_time_s": wall_time_s,
        "mlflow_run_id": None,
        "config": cfg.flat(),
        "reference": extra,
    }


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _with_error(value, standard_error) -> str:
    """A reading with its bootstrap standard error where the run measured one."""
    return _number(value) + (f" ± {standard_error:.4f}" if standard_error is not None and value is not None else "")


def _scored(name, value) -> str:
    return "-" if name is None else f"{_number(value)} ({name})"


def markdown_table(rows: list[dict]) -> str:
    header = ("| setting | modalities | fusion | balanced acc (fused head) ± SE | chosen predictor | best single head | "
              "macro-F1 | accuracy | robustness (mean over patterns) | acc, 50% of one modality missing ("
              + " / ".join(MODALITIES) + ") | wall s |")
    lines = [header, "|" + "---|" * 11]
    for row in rows:
        half = (row["robustness"] or {}).get("missing_rate", {})
        missing = " / ".join(f"{half[m]['0.5']:.3f}" if m in half else "-" for m in MODALITIES)
        lines.append(
            f"| {row['name']} | {row['modalities']} | {row['fusion']} | "
            f"{_with_error(row['val_balanced_accuracy'], row.get('val_balanced_accuracy_se'))} | "
            f"{_scored(row.get('predictor'), row.get('predictor_val_balanced_accuracy'))} | "
            f"{_scored(row.get('best_head'), row.get('best_head_val_balanced_accuracy'))} | "
            f"{_number(row['val_macro_f1'])} | {_number(row['val_accuracy'])} | "
            f"{_number(row['robustness_mean_pattern_accuracy'])} | {missing} | {row['wall_time_s']:.0f} |"
        )
    return "\n".join(lines + reference_notes(rows))


def reference_notes(rows: list[dict]) -> list[str]:
    """Below the table: which rows the reference's numbers count, and its late fusion of every pair."""
    reference = [r for r in rows if r.get("reference") is not None]
    if not reference:
        return []
    unimodal = [r for r in reference if "all_rows" in r["reference"]]
    notes = ["", "Reference (a plain per-modality recipe, resmm's decoding and split): unimodal rows count the "
             "validation rows where the modality is present (as resmm's per-modality heads); on every validation "
             "row, the majority class where it is absent, balanced accuracy " + ", ".join(
                 f"{r['modalities']} {_number(r['reference']['all_rows']['balanced_accuracy'])}" for r in unimodal)
             + ". Late fusion counts every validation row; its robustness is the mean accuracy over the presence "
             "patterns as resmm's (a pattern fuses only its modalities' models; a row with none of them gets the "
             "majority class)."]
    for row in reference:
        pairs = row["reference"].get("pairs")
        if pairs:
            notes += ["", "| reference late fusion of a pair | rows (one of the pair present) | balanced acc | "
                      "macro-F1 | accuracy |", "|---|---|---|---|---|"]
            notes += [f"| {pair} | {s['rows']} | {_number(s['balanced_accuracy'])} | {_number(s['macro_f1'])} | "
                      f"{_number(s['accuracy'])} |" for pair, s in pairs.items()]
    return notes


def write_results(rows: list[dict], out_stem: str | Path) -> tuple[Path, Path]:
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_stem.with_suffix(".json"), out_stem.with_suffix(".md")
    json_path.write_text(json.dumps(rows, indent=2))
    md_path.write_text(markdown_table(rows) + "\n")
    return json_path, md_path
