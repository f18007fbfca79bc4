"""The batch preprocessor: a Parquet-contract batch in, model-ready numeric arrays with presence masks out."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from resmm.data.audio import decode_audios, read_waveforms, spectrogram_shape
from resmm.data.decoded import Decoded
from resmm.data.image import decode_images
from resmm.data.lengths import AUDIO_SECONDS_FALLBACK, TEXT_TOKENS_FALLBACK, concrete
from resmm.data.text import tokenize_texts

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


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything a preprocessor needs to turn contract rows into tensors; saved with the model."""

    modalities: tuple[str, ...]
    classes: tuple[str, ...]
    image_size_px: int
    image_channels: int
    text_max_tokens: int
    text_vocab_buckets: int
    audio_sample_rate_hz: int
    audio_max_seconds: float
    audio_n_mels: int
    # Input limits on untrusted bytes (defaults keep models saved before the limits existed loadable).
    image_max_pixels: int = 25_000_000
    text_max_chars: int = 20_000

    @classmethod
    def from_config(cls, data_cfg, modalities: Sequence[str], classes: Sequence[str]) -> "PreprocessSpec":
        return cls(
            modalities=tuple(modalities),
            classes=tuple(classes),
            image_size_px=data_cfg.image_size_px,
            image_channels=data_cfg.image_channels,
            text_max_tokens=concrete(data_cfg.text_max_tokens, TEXT_TOKENS_FALLBACK),
            text_vocab_buckets=data_cfg.text_vocab_buckets,
            audio_sample_rate_hz=data_cfg.audio_sample_rate_hz,
            audio_max_seconds=concrete(data_cfg.audio_max_seconds, AUDIO_SECONDS_FALLBACK),
            audio_n_mels=data_cfg.audio_n_mels,
            image_max_pixels=data_cfg.image_max_pixels,
            text_max_chars=data_cfg.text_max_chars,
        )

    def input_shape(self, modality: str) -> tuple[int, ...]:
        """Shape of one preprocessed example of a modality (what its encoder consumes)."""
        if modality == "image":
            return (self.image_channels, self.image_size_px, self.image_size_px)
        if modality == "text":
            return (self.text_max_tokens,)
        if modality == "audio":
            return spectrogram_shape(self.audio_sample_rate_hz, self.audio_max_seconds, self.audio_n_mels)
        raise KeyError(modality)


class BatchPreprocessor:
    """Callable for `Dataset.map_batches` (and the pyfunc model): decode every modality, map labels to indices.

    Output keys: `<modality>` (float32 / int64 array), `<modality>_present` (float32 0/1), `label` (int64,
    -1 for unlabeled rows or labels outside the vocabulary). A missing or undecodable modality is zero-filled
    and marked absent, so the model never mistakes padding for signal.
    """

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self._class_index = {name: i for i, name in enumerate(spec.classes)}

    def decode_column(self, modality: str, cells: list, features: bool = True) -> Decoded:
        """Decode one modality's cells. features=False skips the work that cannot fail (the audio spectrogram),
        for the validation pass that only needs presence and events; presence is identical either way."""
        spec = self.spec
        if modality == "image":
            return decode_images(cells, spec.image_size_px, spec.image_channels, spec.image_max_pixels)
        if modality == "text":
            return tokenize_texts(cells, spec.text_max_tokens, spec.text_vocab_buckets, spec.text_max_chars)
        if modality == "audio":
            decode = decode_audios if features else _waveforms_only
            return decode(cells, spec.audio_sample_rate_hz, spec.audio_max_seconds, spec.audio_n_mels)
        raise KeyError(modality)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        rows = len(next(iter(batch.values())))
        out: dict[str, np.ndarray] = {}
        for modality in self.spec.modalities:
            column = batch.get(modality)
            values, present, _ = self.decode_column(modality, column_cells(column, rows))
            out[modality] = values
            out[f"{modality}_present"] = present.astype(np.float32)
        out["label"] = self.label_indices(column_cells(batch.get("label"), rows))
        return out

    def label_indices(self, labels) -> np.ndarray:
        return np.array(
            [self._class_index.get(label_name(v), UNLABELED) for v in labels], dtype=np.int64
        )


def _waveforms_only(cells, sample_rate_hz: int, max_seconds: float, n_mels: int) -> Decoded:
    return read_waveforms(cells, sample_rate_hz, max_seconds)


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
