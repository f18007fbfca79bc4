"""Cells of a Parquet-contract batch: columns of any kind as Python cells, labels as class names."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

UNLABELED = -1  # label index of rows that are kept out of the supervised loss


def label_name(value: Any) -> str | None:
    """A raw label cell -> its class name; None for a null (unlabeled) cell. Integer labels map to '3', not '3.0'."""
    if value is None or value is pd.NA or value is pd.NaT:  # pd.NA: Arrow-backed pandas batches
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def column_cells(column, rows: int) -> list:
    """A numpy / pandas / pyarrow / list column (None = absent column) -> Python cells with None for nulls."""
    if column is None:
        return [None] * rows
    if hasattr(column, "to_pylist"):
        column = column.to_pylist()
    elif hasattr(column, "tolist"):
        column = column.tolist()
    return [None if _is_null(v) else v for v in column]


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False
