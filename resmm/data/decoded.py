"""What a column decoder returns: the values, which rows carry the modality, and what happened to each row."""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

# Each row's event is a fault (a DecodeError: the modality's bytes are unusable, so the row keeps going with that
# modality marked missing; the record lists its fault names) or an input limit (the value is usable but longer
# than allowed, so it is cut and counted). Each decoder module names its own.


class Decoded(NamedTuple):
    values: np.ndarray  # (N, ...) model-ready array, zeros where the modality is missing
    present: np.ndarray  # (N,) bool
    events: list  # per row: a fault or limit name above, or None


class DecodeError(ValueError):
    """One cell's bytes are unusable; `reason` (a fault name above) says why. The row keeps going with the
    modality marked missing, and the validation pass counts the reason."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def decode_cells(cells, shape: tuple[int, ...], decode_one: Callable, dtype=np.float32) -> Decoded:
    """A column of encoded cells (None or empty = missing) -> (N, *shape) `dtype`, presence, per-row event.

    decode_one(blob) -> (array, event or None); an array shorter than shape[0] is zero-padded (a short clip).
    """
    values = np.zeros((len(cells), *shape), dtype=dtype)
    present = np.zeros(len(cells), dtype=bool)
    events: list = [None] * len(cells)
    for i, blob in enumerate(cells):
        if blob is None or len(blob) == 0:
            continue
        try:
            value, events[i] = decode_one(blob)
        except DecodeError as exc:
            events[i] = exc.reason
            continue
        values[i, : len(value)] = value
        present[i] = True
    return Decoded(values, present, events)
