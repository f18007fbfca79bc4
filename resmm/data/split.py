"""Deterministic train/validation split by a stable hash of sample_id: the same row lands on the same side forever."""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

_BUCKETS = 10_000


def is_validation(sample_ids, val_fraction: float) -> np.ndarray:
    """(N,) bool: which sample ids fall in the validation split (crc32, stable across processes and runs)."""
    threshold = int(round(val_fraction * _BUCKETS))
    return np.fromiter(
        (zlib.crc32(str(s).encode("utf-8")) % _BUCKETS < threshold for s in sample_ids),
        dtype=bool,
        count=len(sample_ids),
    )


def select_split(table: pa.Table, *, validation: bool, val_fraction: float) -> pa.Table:
    """map_batches stage (pyarrow format): keep only the rows of one side of the split."""
    in_val = is_validation(table.column("sample_id").to_pylist(), val_fraction)
    return table.filter(pa.array(in_val if validation else ~in_val))
