"""What a column decoder returns: the values, which rows carry the modality, and what happened to each row."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Faults: the modality's bytes are unusable, so the row keeps going with that modality marked missing.
IMAGE_UNDECODABLE = "image_undecodable"
IMAGE_TOO_LARGE = "image_too_large"
AUDIO_UNDECODABLE = "audio_undecodable"
AUDIO_EMPTY_OR_NAN = "audio_empty_or_nan"
MODALITY_FAULTS = (IMAGE_UNDECODABLE, IMAGE_TOO_LARGE, AUDIO_UNDECODABLE, AUDIO_EMPTY_OR_NAN)

# Input limits: the value is usable but longer than allowed, so it is cut (and counted).
AUDIO_TRUNCATED = "audio_truncated"
TEXT_TRUNCATED = "text_truncated"
INPUT_LIMITS = (AUDIO_TRUNCATED, TEXT_TRUNCATED)


class Decoded(NamedTuple):
    values: np.ndarray  # (N, ...) model-ready array, zeros where the modality is missing
    present: np.ndarray  # (N,) bool
    events: list  # per row: a fault or limit name above, or None
