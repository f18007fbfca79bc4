"""Deterministic train/validation split by a stable hash of sample_id: the same row lands on the same side forever."""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

_BUCKETS = 10_000


def buckets_of(sample_ids) -> np.ndarray:
    """(N,) uint16 split bucket of each sample id: crc32 % 10,000, stable across processes and runs."""
    return np.fromiter((zlib.crc32(str(s).encode("utf-8")) % _BUCKETS for s in sample_ids), dtype=np.uint16,
                       count=len(sample_ids))


def in_validation(buckets: np.ndarray, val_fraction: float) -> np.ndarray:
    """(N,) bool: which buckets fall in the validation split."""
    return buckets < int(round(val_fraction * _BUCKETS))


def is_validation(sample_ids, val_fraction: float) -> np.ndarray:
    """(N,) bool: which sample ids fall in the validation split."""
    return in_validation(buckets_of(sample_ids), val_fraction)


def select_split(table: pa.Table, *, validation: bool, val_fraction: float) -> pa.Table:
    """map_batches stage (pyarrow format): keep only the rows of one side of the split."""
    in_val = is_validation(table.column("sample_id").to_pylist(), val_fraction)
    return table.filter(pa.array(in_val if validation else ~in_val))
