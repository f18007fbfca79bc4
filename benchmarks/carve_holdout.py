"""Carve a group-disjoint holdout out of a corpus's shards, for scoring defaults on rows no choice saw.

    python benchmarks/carve_holdout.py --source ~/.cache/resmm/demo-v2 --out /tmp/demo-glyph [--fraction 0.2]

Rows whose group (`--group-column`, default `group_id`; a row without one stands alone by its sample_id) falls in
the `--fraction` of a salted crc32 go to `<out>/holdout/`, every other row to `<out>/train/`, shard by shard. The
salt keeps the holdout independent of resmm's own validation split (an unsalted crc32 of the same key). The
demo's groups are its handwritten glyphs, so its holdout holds glyphs no training row was drawn from.
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

SALT = "holdout:"


def holdout_mask(table, group_column: str, fraction: float) -> np.ndarray:
    ids = table.column("sample_id").to_pylist()
    groups = table.column(group_column).to_pylist() if group_column in table.column_names else [None] * len(ids)
    keys = [g if g not in (None, "") else s for s, g in zip(ids, groups)]
    return np.array([zlib.crc32(f"{SALT}{k}".encode()) % 10_000 < fraction * 10_000 for k in keys], dtype=bool)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--group-column", default="group_id")
    args = parser.parse_args()
    shards = sorted(args.source.glob("*.parquet"))
    if not shards:
        print(f"carve_holdout: no .parquet shards under {args.source}", file=sys.stderr)
        return 2
    counts = {"train": 0, "holdout": 0}
    for side in counts:
        (args.out / side).mkdir(parents=True, exist_ok=True)
    for shard in shards:
        table = pq.read_table(shard)
        held = holdout_mask(table, args.group_column, args.fraction)
        for side, rows in (("train", ~held), ("holdout", held)):
            part = table.filter(rows)
            if side == "holdout":  # scored only where labelled, as the stamps holdout
                part = part.filter(part.column("label").is_valid())
            pq.write_table(part, args.out / side / shard.name, row_group_size=256)
            counts[side] += part.num_rows
    print(f"carve_holdout: {counts['train']} training rows, {counts['holdout']} holdout rows under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
