"""`auto` input lengths: how many text tokens and audio seconds to keep, measured from the user's shards.

A fixed length encodes one dataset: 48 tokens hold the demo's captions whole but cut 1 row in 8 of the stamps
corpus's descriptions, and 1.0 s cuts every one of its 1.5 s clips. `auto` reads a sample of rows spread over
the training shards before anything else (audio: the header only), and keeps the 95th percentile, within
bounds that hold the model's cost in check. Rows beyond it are still cut and counted (`text_truncated` is
counted by characters, `audio_truncated` by seconds).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile

from resmm.data.text import tokenize

QUANTILE = 95  # percent of the sampled rows kept whole
TEXT_TOKENS_BOUNDS = (16, 256)
AUDIO_SECONDS_BOUNDS = (0.25, 10.0)
# Where nothing is measured (no text or audio in the sample, or a spec built without data): the demo's sizes.
TEXT_TOKENS_FALLBACK = 48
AUDIO_SECONDS_FALLBACK = 1.0
SAMPLE_SHARDS = 8
SAMPLE_ROWS_PER_SHARD = 64


@dataclass(frozen=True)
class LengthChoice:
    """A resolved length: the value, and the measurement that chose it (for the console, summary and MLflow)."""

    key: str  # config key, e.g. "data.text.max_tokens"
    value: float
    reason: str


def text_token_counts(texts, buckets: int, max_chars: int) -> list[int]:
    return [len(tokenize(t[:max_chars], 1 << 30, buckets)) for t in texts if isinstance(t, str) and t]


def audio_durations(blobs) -> list[float]:
    """Seconds of each readable clip, from its header (no samples are decoded); unreadable clips are skipped
    here and quarantined by the validation pass."""
    seconds = []
    for blob in blobs:
        if not blob:
            continue
        try:
            info = soundfile.info(io.BytesIO(blob))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
            continue
        if info.samplerate > 0 and info.frames > 0:
            seconds.append(info.frames / info.samplerate)
    return seconds


def sample_columns(filesystem, paths: list[str], columns: list[str]) -> dict[str, list]:
    """Up to SAMPLE_ROWS_PER_SHARD leading rows of `columns` from up to SAMPLE_SHARDS shards spread over the
    list. A shard that fails to read is left out: the validation pass reports it."""
    spread = np.unique(np.linspace(0, len(paths) - 1, min(SAMPLE_SHARDS, len(paths))).astype(int))
    cells: dict[str, list] = {c: [] for c in columns}
    for path in (paths[i] for i in spread):
        try:
            with filesystem.open(path, "rb") as handle:
                batch = next(pq.ParquetFile(handle).iter_batches(batch_size=SAMPLE_ROWS_PER_SHARD, columns=columns),
                             None)
        except (OSError, ValueError, pa.ArrowException):
            continue
        if batch is not None:
            for c in columns:
                cells[c].extend(batch.column(c).to_pylist())
    return cells


def choose_text_tokens(counts: list[int]) -> LengthChoice:
    key = "data.text.max_tokens"
    if not counts:
        return LengthChoice(key, TEXT_TOKENS_FALLBACK, "no text in the sample: the fallback")
    measured = float(np.percentile(counts, QUANTILE))
    value = int(min(max(8 * math.ceil(measured / 8), TEXT_TOKENS_BOUNDS[0]), TEXT_TOKENS_BOUNDS[1]))
    return LengthChoice(key, value, f"p{QUANTILE} of {len(counts)} sampled texts = {measured:.0f} tokens")


def choose_audio_seconds(seconds: list[float]) -> LengthChoice:
    key = "data.audio.max_seconds"
    if not seconds:
        return LengthChoice(key, AUDIO_SECONDS_FALLBACK, "no readable audio in the sample: the fallback")
    measured = float(np.percentile(seconds, QUANTILE))
    value = min(max(math.ceil(measured * 10 - 1e-6) / 10, AUDIO_SECONDS_BOUNDS[0]), AUDIO_SECONDS_BOUNDS[1])
    return LengthChoice(key, value, f"p{QUANTILE} of {len(seconds)} sampled clips = {measured:.2f} s")
