"""The train/validation split: by group where rows name one, else by sample_id, exactly as before groups."""
import zlib

import numpy as np
import pyarrow as pa

from resmm.data.split import buckets_of, in_validation, split_keys


def test_no_group_lands_on_both_sides():
    groups = [f"object-{i % 8}" for i in range(96)]  # 96 photos of 8 objects
    table = pa.table({"sample_id": [f"photo-{i}" for i in range(96)], "group_id": groups})
    in_val = in_validation(buckets_of(split_keys(table, "group_id")), 0.3)
    sides = {}
    for group, side in zip(groups, in_val.tolist()):
        sides.setdefault(group, set()).add(side)
    assert all(len(s) == 1 for s in sides.values())
    assert {True, False} == {side for s in sides.values() for side in s}  # both sides hold groups


def test_rows_without_a_group_split_by_sample_id():
    table = pa.table({"sample_id": ["a", "b", "c"], "group_id": ["g", None, ""]})
    assert split_keys(table, "group_id") == ["g", "b", "c"]


def test_without_the_group_column_the_buckets_are_the_sample_id_crc32():
    table = pa.table({"sample_id": ["s0-0", "s0-1", "demo-0-0000007"], "label": [0, 1, 2]})
    today = np.array([zlib.crc32(s.encode()) % 10_000 for s in table.column("sample_id").to_pylist()], np.uint16)
    for group_column in ("group_id", None):
        np.testing.assert_array_equal(buckets_of(split_keys(table, group_column)), today)
