"""Missing-modality mixture bound: train the defaults on a copy of a corpus with one modality removed from half the rows.

    python benchmarks/missing_bound.py --data ~/.cache/resmm/stamps-v2/train --corpus stamps --modality image \
        --full-summary full.json [--rate 0.5] [--work /tmp/missing-bound] [-- key=value ...]

A user whose shards lack modality m in half the rows gets a model trained on that data. Before training
anything, two models bound what it could score on those rows: the model trained on complete data scores
`full` on the rows that keep m and `pair` (its presence pattern without m) on the rows that lost it. The
mixture bound is their mean, (full + pair) / 2. Imputation must not lose more than that.

The copy nulls column m in the rows whose crc32(sample_id + salt) falls in the first `rate` of the buckets: a
hash independent of the train/validation split, so both sides lose m in the same share of rows. `--full-summary`
is the `jobs/train.py --summary-json` of a run of the same config on the untouched corpus. Appends one row
per (corpus, modality) to benchmarks/results/missing-bound.{json,md}; prints the row.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from resmm.data.split import is_validation
from resmm.train.robustness import pattern_name

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
MODALITIES = ("image", "text", "audio")
_SALT = "|missing-bound"  # keeps the dropped rows independent of the validation split's crc32(sample_id)


def dropped_rows(sample_ids, rate: float) -> np.ndarray:
    """(N,) bool: the rows that lose the modality, a stable `rate` share of them (the split's crc32 share,
    taken over the salted ids)."""
    return is_validation([f"{s}{_SALT}" for s in sample_ids], rate)


def write_degraded_copy(source: Path, target: Path, modality: str, rate: float) -> dict:
    """Copy every shard under `source` to `target`, nulling `modality` in the dropped rows; counts per state."""
    target.mkdir(parents=True, exist_ok=True)
    counts = {"rows": 0, "nulled": 0, "already_missing": 0}
    for shard in sorted(source.glob("*.parquet")):
        table = pq.read_table(shard)
        drop = dropped_rows(table.column("sample_id").to_pylist(), rate)
        column = table.column(modality)
        counts["rows"] += table.num_rows
        counts["already_missing"] += column.null_count
        counts["nulled"] += int((drop & ~column.is_null().to_numpy(zero_copy_only=False)).sum())
        kept = pc.if_else(pa.array(drop), pa.nulls(table.num_rows, column.type), column)
        table = table.set_column(table.schema.get_field_index(modality), modality, kept)
        pq.write_table(table, target / shard.name)
    return counts


def pair_without(modality: str) -> str:
    return pattern_name(m for m in MODALITIES if m != modality)


def bound_row(full: dict, degraded: dict, modality: str, counts: dict, overrides: list[str]) -> dict:
    pair = pair_without(modality)
    full_acc = full["metrics"]["val_balanced_accuracy"]
    pair_acc = full["robustness"]["patterns_balanced"][pair]
    bound = (full_acc + pair_acc) / 2
    measured = degraded["metrics"]["val_balanced_accuracy"]
    return {
        "modality": modality, "full": full_acc, "pair_without": pair, "pair": pair_acc, "bound": bound,
        "measured": measured, "margin": measured - bound, "holds": measured >= bound,
        "degraded_pair": degraded["robustness"]["patterns_balanced"][pair],
        "epochs": degraded["epochs"], "stop_reason": degraded.get("stop_reason"),
        "wall_time_s": degraded["wall_time_s"], "rows": counts, "overrides": overrides,
    }


def render(results: dict) -> str:
    lines = ["# Missing-modality mixture bound (issue 15, point 6)", "",
             "Each row: the defaults trained on a copy of the corpus with one modality removed from 50% more rows",
             "(train and validation alike), against (full + pair) / 2 from the run on the untouched corpus.",
             "Balanced accuracy on the validation split; written by `benchmarks/missing_bound.py`.", "",
             "| corpus | run | m removed | full | pair without m | bound | measured | margin | holds | "
             "pair in the degraded run | epochs | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        corpus, label, _ = key.split(":")
        lines.append(
            f"| {corpus} | {label} | {r['modality']} | {r['full']:.3f} | {r['pair']:.3f} ({r['pair_without']}) | "
            f"{r['bound']:.3f} | {r['measured']:.3f} | {r['margin']:+.3f} | {'yes' if r['holds'] else 'no'} | "
            f"{r['degraded_pair']:.3f} | {r['epochs']} | {r['wall_time_s']:.0f} |")
    return "\n".join(lines + seed_means(results)) + "\n"


def seed_means(results: dict) -> list[str]:
    """Rows of one config over several seeds (labels `L` and `L, seed N`), averaged: one seed's margin is within
    run-to-run noise (2-4 points), so the bound is judged on the means."""
    groups: dict[tuple, list[dict]] = {}
    for key, row in results.items():
        corpus, label, modality = key.split(":")
        groups.setdefault((corpus, label.split(", seed")[0], modality), []).append(row)
    groups = {k: rows for k, rows in groups.items() if len(rows) > 1}
    if not groups:
        return []
    lines = ["", "Means over seeds (each seed's bound comes from the full run of that seed):", "",
             "| corpus | run | m removed | seeds | full | pair without m | bound | measured | margin | holds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (corpus, label, modality), rows in groups.items():
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("full", "pair", "bound", "measured")}
        margin = mean["measured"] - mean["bound"]
        lines.append(f"| {corpus} | {label} | {modality} | {len(rows)} | {mean['full']:.3f} | {mean['pair']:.3f} | "
                     f"{mean['bound']:.3f} | {mean['measured']:.3f} | {margin:+.3f} | {'yes' if margin >= 0 else 'no'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="directory of the corpus's training shards")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--modality", choices=MODALITIES, required=True)
    parser.add_argument("--full-summary", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--label", default="defaults")
    parser.add_argument("--work", type=Path, default=Path("/tmp/missing-bound"))
    parser.add_argument("overrides", nargs="*", help="extra jobs/train.py overrides (after --)")
    args = parser.parse_args()

    full = json.loads(args.full_summary.read_text())
    name = f"{args.corpus}-{args.modality}-{args.label}".replace(" ", "_").replace("/", "_")
    copy = args.work / name / "data"
    counts = write_degraded_copy(args.data.expanduser(), copy, args.modality, args.rate)
    print(f"[missing-bound] {args.corpus}: {args.modality} nulled in {counts['nulled']} more of {counts['rows']} rows "
          f"({counts['already_missing']} already missing) -> {copy}", flush=True)
    summary_path = args.work / name / "summary.json"
    subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "train.py"), "--summary-json", str(summary_path),
                    f"data.path={copy}", *args.overrides], check=True, cwd=REPO_ROOT)
    row = bound_row(full, json.loads(summary_path.read_text()), args.modality, counts, args.overrides)

    results_json = RESULTS / "missing-bound.json"
    results = json.loads(results_json.read_text()) if results_json.exists() else {}
    results[f"{args.corpus}:{args.label}:{args.modality}"] = row
    results_json.write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "missing-bound.md").write_text(render(results))
    print(render({f"{args.corpus}:{args.label}:{args.modality}": row}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
