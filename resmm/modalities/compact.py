"""Each modality's compact form in the decoded-feature cache (resmm/data/cache.py), as the fill task decodes it
(the way back runs on the worker: resmm.modalities.transforms.expand_batch); the layout of an entry's columns;
and the files whose code keys the entries, so that editing any modality's decoder re-decodes."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from resmm.data.cache import Layout
from resmm.data.decoded import Decoded
from resmm.modalities import MODALITIES

# Modules every decoded value passes through, whatever its modality: fault capture, cells and labels, the
# split buckets stored beside the values, the entry format, and the batch preprocessor.
_SHARED_DECODE_MODULES = ("resmm.data.decoded", "resmm.data.cells", "resmm.data.split", "resmm.data.cache",
                          "resmm.modalities.spec", "resmm.modalities.compact")


def decode_sources() -> list[Path]:
    """The source files whose code shapes a stored value: the shared modules and every registered modality's
    own (resmm.modalities.base.Modality.decode_sources)."""
    modules = [*_SHARED_DECODE_MODULES, *(name for record in MODALITIES.values() for name in record.decode_sources())]
    return sorted({Path(importlib.import_module(name).__file__).resolve() for name in modules})


def compact_values(modality: str, values: np.ndarray, settings) -> np.ndarray:
    """Decoded (N, ...) float32/int64 values -> the compact array an entry stores (the record's `compact`)."""
    record = MODALITIES[modality]
    if record.compact is None:
        return np.ascontiguousarray(values)
    return np.ascontiguousarray(record.compact(values, settings))


def decode_compact(modality: str, cells: list, settings) -> Decoded:
    """A column of cells decoded into the compact form an entry stores: the record's `decode_compact` where it
    has one, else its `compact` of the decoded values."""
    record = MODALITIES[modality]
    if record.decode_compact is not None:
        return record.decode_compact(cells, settings)
    decoded = record.decode(cells, settings)
    return decoded._replace(values=compact_values(modality, decoded.values, settings))


def layout_of(spec) -> Layout:
    """The per-row shape and stored dtype of each modality of `spec`."""
    shapes = {}
    for m in spec.modalities:
        probe = compact_values(m, np.zeros((1, *spec.input_shape(m)), np.float32), spec.settings[m])
        shapes[m] = (tuple(spec.input_shape(m)), probe.dtype.name)
    return Layout(shapes)
