"""Collect runs of the defaults into benchmarks/results/defaults.{json,md}, one table per corpus.

    python benchmarks/defaults_report.py --corpus stamps --label "defaults, seed 0" --summary summary.json
    python benchmarks/defaults_report.py --corpus stamps --label "reference" --reference compare.json
    python benchmarks/defaults_report.py --render   # only rewrite the Markdown from the JSON

--summary takes the JSON `jobs/train.py --summary-json` writes; --reference the JSON `jobs/compare.py
--reference-only --out STEM` writes (STEM.json). A label already in the corpus's table is replaced.
Pairs: balanced accuracy on every validation row with only the pair shown: resmm's robustness patterns, and the
reference's late fusion of the pair's two models (a row with neither gets the training majority class). The
reference's score on only the rows that carry one of the pair is kept in the JSON as `pairs_covered_rows`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = ("image+text", "audio+image", "audio+text")
MODALITIES = ("image", "text", "audio")
HEADER = """# Defaults on both development corpora (issue 15)

2 CPU cores, 24 GiB, no GPU; 2 DDP workers (gloo) unless the label says otherwise; validation = 10% hash
split of `sample_id`. Balanced accuracy on the validation split; heads: the validation rows where the modality
is present; pairs: every validation row with only the pair shown (for both resmm and the reference). Rows are
written by `benchmarks/defaults_report.py` from the summaries of `jobs/train.py` and `jobs/compare.py
--reference-only`, one run at a time. Reference rows dated 2026-12-02 scored pairs on other rows; their pair
scores are kept in the JSON only (`pairs_covered_rows`).
"""


def resmm_row(summary: dict) -> dict:
    heads = summary.get("heads", {})
    modalities = [m for m in MODALITIES if f"{m}_balanced_accuracy" in heads]
    fused = summary["metrics"]["val_balanced_accuracy"]
    row = {"fused": fused, "modalities": modalities, **{m: heads[f"{m}_balanced_accuracy"] for m in modalities}}
    patterns = (summary.get("robustness") or {}).get("patterns_balanced", {})
    return row | {
        "pairs": {p: patterns[p] for p in PAIRS if p in patterns},
        "epochs": summary["epochs"], "stop_reason": summary.get("stop_reason"), "recipe": summary.get("recipe"),
        "lengths": {k: v["value"] for k, v in summary.get("lengths", {}).items()},
        "num_workers": summary.get("num_workers"), "wall_time_s": summary["wall_time_s"],
    }


def reference_row(rows: list[dict]) -> dict:
    fusion = next(r for r in rows if r["name"] == "reference: late fusion")
    unimodal = {r["modalities"]: r["val_balanced_accuracy"] for r in rows if r is not fusion}
    all_rows = {r["modalities"]: r["reference"]["all_rows"]["balanced_accuracy"] for r in rows if r is not fusion}
    extra = fusion.get("reference", {})
    return {"fused": fusion["val_balanced_accuracy"], **unimodal, "reference": True, "all_rows": all_rows,
            # every validation row, as resmm's patterns (a row with neither of the pair: the majority class)
            "pairs": {p: v for p, v in fusion["robustness"]["patterns_balanced"].items() if p in PAIRS},
            "pairs_covered_rows": {p: s["balanced_accuracy"] for p, s in extra.get("pairs", {}).items()},
            "epochs": extra.get("epochs"), "wall_time_s": fusion["wall_time_s"]}


def wall_seconds(row: dict) -> int | None:
    return round(row["wall_time_s"]) if row.get("wall_time_s") else None


def cell(value) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render(results: dict) -> str:
    lines = [HEADER]
    for corpus, runs in results.items():
        if not isinstance(runs, dict) or corpus in ("machine", "metric"):
            continue
        lines += [f"## {corpus}", "", "| run | fused | image head | text head | audio head | "
                  + " | ".join(PAIRS) + " | epochs | wall s |", "|---" * (7 + len(PAIRS)) + "|"]
        for label, row in runs.items():
            values = [row.get("fused"), *(row.get(m) for m in MODALITIES),
                      *(row.get("pairs", {}).get(p) for p in PAIRS), row.get("epochs"),
                      wall_seconds(row)]
            lines.append(f"| {label} | " + " | ".join(cell(v) for v in values) + " |")
        lines += ["", *unimodal_table(runs)]
    return "\n".join(lines)


def unimodal_table(runs: dict) -> list[str]:
    """One-modality resmm runs against the latest reference's model of that modality, on the same rows."""
    references = [row for row in runs.values() if row.get("reference") and row.get("all_rows")]
    alone = {label: row for label, row in runs.items() if len(row.get("modalities", ())) == 1}
    if not references or not alone:
        return []
    reference = references[-1]
    lines = ["Unimodal models: the one-modality resmm run against the reference's model of that modality. All rows:",
             "every validation row (a row without the modality: resmm imputes, the reference predicts its training",
             "majority class). Present rows: the rows that carry it (resmm's head on them).", "",
             "| run | modality | resmm, all rows | reference, all rows | resmm, present rows | reference, present rows "
             "| epochs | wall s |", "|---" * 8 + "|"]
    for label, row in alone.items():
        m = row["modalities"][0]
        values = [row["fused"], reference["all_rows"].get(m), row.get(m), reference.get(m), row.get("epochs"),
                  wall_seconds(row)]
        lines.append(f"| {label} | {m} | " + " | ".join(cell(v) for v in values) + " |")
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus")
    parser.add_argument("--label")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--summary", type=Path)
    source.add_argument("--reference", type=Path)
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    json_path = RESULTS / "defaults.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if not args.render:
        if not (args.corpus and args.label and (args.summary or args.reference)):
            parser.error("give --corpus, --label and --summary or --reference (or --render)")
        loaded = json.loads((args.summary or args.reference).read_text())
        row = resmm_row(loaded) if args.summary else reference_row(loaded)
        results.setdefault(args.corpus, {})[args.label] = row
        json_path.write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "defaults.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
