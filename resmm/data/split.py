"""Deterministic train/validation split by a stable hash of each row's split key: its group (`data.group_column`)
when it has one, else its sample_id. The same row, and every row of its group, lands on the same side forever.

Only the standard library, numpy and pyarrow are imported here: pipelines/model_actors.py loads this file apart
from the resmm package.
"""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

_BUCKETS = 10_000
# The batch key of a validation row's split bucket: rows of one group share it, so the bootstrap that puts error
# bars on validation readings resamples it as the group (two groups in one bucket are resampled as one).
SPLIT_GROUP = "split_group"


def buckets_of(sample_ids) -> np.ndarray:
    """(N,) uint16 split bucket of each split key: crc32 % 10,000, stable across processes and runs."""
    return np.fromiter((zlib.crc32(str(s).encode("utf-8")) % _BUCKETS for s in sample_ids), dtype=np.uint16,
                       count=len(sample_ids))


def split_keys(table: pa.Table, group_column: str | None) -> list:
    """Each row's split key: its `group_column` cell when non-empty, else its sample_id (every row of a table
    without that column), so near-duplicates that share a group never straddle the split."""
    sample_ids = table.column("sample_id").to_pylist()
    if group_column is None or group_column not in table.column_names:
        return sample_ids
    groups = table.column(group_column).to_pylist()
    return [sample_id if group in (None, "") else group for sample_id, group in zip(sample_ids, groups)]


def in_validation(buckets: np.ndarray, val_fraction: float) -> np.ndarray:
    """(N,) bool: which buckets fall in the validation split."""
    return buckets < int(round(val_fraction * _BUCKETS))


def is_validation(sample_ids, val_fraction: float) -> np.ndarray:
    """(N,) bool: which split keys fall in the validation split."""
    return in_validation(buckets_of(sample_ids), val_fraction)
