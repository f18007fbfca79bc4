"""Tabulate the encoder family and the imputers (issue 28) from the result files the benchmarks wrote.

    python benchmarks/encoder_family_report.py [--out benchmarks/results/encoder-family.md]

Reads, from benchmarks/results/:
- encoder_probe-<corpus>-<modality>.json (benchmarks/encoder_probe.py): each encoder alone, under the reference's
  recipe, seeds 0 and 1;
- encoders-<corpus>-s<seed>.json (jobs/compare.py --grid jobs/configs/grids/encoders.yaml): each encoder fused with
  the default encoders of the other modalities, at 8 epochs;
- holdout-encoders-stamps-s<seed>.json (benchmarks/holdout_eval.py): those stamps models on the stamp-disjoint
  holdout;
- missing-bound.json (benchmarks/missing_bound.py): the rows labelled `8 epochs, impute=<name>`.
Prints the tables and writes them as Markdown.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resmm.modalities import MODALITIES  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CORPORA = ("demo", "stamps")
PROBE_ORDER = {"image": ("reference", "resmm", "maxpool", "vit"),
               "text": ("reference", "resmm", "lstm", "gru", "transformer"),
               "audio": ("reference", "resmm", "gru", "lstm", "transformer")}
RESNET_ALIASES = {"maxpool": "resmm"}  # the demo image probe named today's ResNet by its change


def alone_table() -> list[str]:
    lines = ["| modality | encoder | demo (seeds 0, 1) | stamps (seeds 0, 1) | params (stamps) |",
             "|---|---|---|---|---|"]
    for modality, order in PROBE_ORDER.items():
        cells: dict[str, dict[str, str]] = {}
        params: dict[str, int] = {}
        for corpus in CORPORA:
            path = RESULTS / f"encoder_probe-{corpus}-{modality}.json"
            variants = json.loads(path.read_text())["variants"] if path.exists() else {}
            for name in order:
                found = variants.get(name)
                if found is None:
                    continue
                label = RESNET_ALIASES.get(name, name)
                if corpus in cells.get(label, {}):
                    continue
                scores = ", ".join(f"{s:.3f}" for s in found["balanced_accuracy"])
                cells.setdefault(label, {})[corpus] = f"{statistics.median(found['balanced_accuracy']):.3f} ({scores})"
                params[label] = found["params"]
        for label, by_corpus in cells.items():
            shown = f"{MODALITIES[modality].default_encoder} (default)" if label == "resmm" else label
            lines.append(f"| {modality} | {shown} | {by_corpus.get('demo', '')} | {by_corpus.get('stamps', '')} | "
                         f"{params[label]:,} |")
    return lines


def fused_rows() -> dict[tuple[str, int], dict[str, dict]]:
    rows = {}
    for path in sorted(RESULTS.glob("encoders-*-s*.json")):
        corpus, seed = path.stem.removeprefix("encoders-").rsplit("-s", 1)
        rows[(corpus, int(seed))] = {row["name"]: row for row in json.loads(path.read_text())}
    return rows


def holdout_scores(corpus: str, seed: int) -> dict[str, float]:
    path = RESULTS / f"holdout-encoders-{corpus}-s{seed}.json"
    if not path.exists():
        return {}
    runs = json.loads(path.read_text())["runs"]
    return {name.split(": ", 1)[1]: run["balanced_accuracy"] for name, run in runs.items()}


def fused_table() -> list[str]:
    runs = fused_rows()
    keys = sorted(runs)
    header = " | ".join(f"{c} s{s} val (chosen)" for c, s in keys)
    holdouts = {k: holdout_scores(*k) for k in keys}
    holdout_keys = [k for k in keys if holdouts[k]]
    header += "".join(f" | {c} s{s} holdout" for c, s in holdout_keys)
    lines = [f"| setting | {header} |", "|---" * (1 + len(keys) + len(holdout_keys)) + "|"]
    names = list(dict.fromkeys(name for k in keys for name in runs[k]))
    for name in names:
        cells = []
        for k in keys:
            row = runs[k].get(name)
            cells.append("" if row is None else
                         f"{row['val_balanced_accuracy']:.3f} ({row.get('predictor_val_balanced_accuracy') or 0:.3f})")
        cells += [f"{holdouts[k][name]:.3f}" if name in holdouts[k] else "" for k in holdout_keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def imputer_table() -> list[str]:
    path = RESULTS / "missing-bound.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    lines = ["| corpus | m removed | imputer | full | pair without m | bound | measured | margin | holds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, row in results.items():
        corpus, label, modality = key.split(":")
        if not label.startswith("8 epochs, impute="):
            continue
        lines.append(f"| {corpus} | {modality} | {label.removeprefix('8 epochs, impute=')} | {row['full']:.3f} | "
                     f"{row['pair']:.3f} | {row['bound']:.3f} | {row['measured']:.3f} | {row['margin']:+.3f} | "
                     f"{'yes' if row['holds'] else 'no'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "encoder-family.md")
    args = parser.parse_args()
    sections = [
        "## Each encoder alone", "",
        "`benchmarks/encoder_probe.py`: the encoder plus resmm's classifier head, trained alone on the rows that have",
        "its modality, under the reference's recipe (Adam 1e-3, batch 64, class-balanced sampling, 12 epochs).",
        "Validation balanced accuracy, median of seeds 0 and 1.", "", *alone_table(), "",
        "## Each encoder fused", "",
        "`jobs/compare.py --grid jobs/configs/grids/encoders.yaml`: the defaults with one modality's encoder",
        "swapped, 8 epochs. Validation balanced accuracy of the fused head (of the final predictor chosen on",
        "validation in brackets); stamps models also scored on the stamp-disjoint holdout by `jobs/predict.py`.", "",
        *fused_table(), "",
        "## Imputers against the mixture bound", "",
        "`benchmarks/missing_bound.py`, 8 epochs: one modality removed from 50% more rows; the bound is",
        "(full + pair without m) / 2 from the 8-epoch default run on the untouched corpus.", "", *imputer_table(),
    ]
    text = "\n".join(sections) + "\n"
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
