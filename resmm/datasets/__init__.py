"""Development corpora written as Parquet shards: `demo` (the built-in dataset) and `stamps` (the second one).

Both are written to a staging directory that is renamed into place with a `_SUCCESS.json` marker holding the
spec, so an interrupted build never looks finished and a changed spec is rebuilt.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

SUCCESS_FILE = "_SUCCESS.json"


def is_built(path: str | Path, spec=None) -> bool:
    """The corpus at `path` finished building (with this spec, when one is given)."""
    marker = Path(path) / SUCCESS_FILE
    if not marker.is_file():
        return False
    return spec is None or json.loads(marker.read_text()).get("spec") == asdict(spec)


def publish(staging: Path, out_dir: Path, summary: dict) -> None:
    """Mark the staged corpus finished and move it into place, replacing an older build."""
    (staging / SUCCESS_FILE).write_text(json.dumps(summary, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


def long_tail_counts(weights: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Rows per class in proportion to `weights` (head first, the rounding remainder to the head), then
    assigned to the classes in an order shuffled by `seed`."""
    counts = np.floor(weights / weights.sum() * rows).astype(int)
    counts[0] += rows - counts.sum()
    order = np.random.default_rng(seed + 101).permutation(len(weights))
    per_class = np.zeros(len(weights), dtype=int)
    per_class[order] = counts
    return per_class
