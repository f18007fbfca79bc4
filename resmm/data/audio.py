"""Audio decoding: encoded WAV/FLAC/OGG of any rate or channel count -> mono, resampled, log-mel (n_mels, T)."""
from __future__ import annotations

import io
from functools import lru_cache, partial
from math import gcd

import numpy as np
import scipy.fft
import soundfile

from resmm.data.decoded import DecodeError, Decoded, decode_cells

AUDIO_UNDECODABLE = "audio_undecodable"  # faults
AUDIO_EMPTY_OR_NAN = "audio_empty_or_nan"
AUDIO_TRUNCATED = "audio_truncated"  # an input limit

_FRAME_SECONDS = 0.032
_HOP_SECONDS = 0.016


def read_waveform(blob: bytes, sample_rate_hz: int, max_seconds: float) -> tuple[np.ndarray, bool]:
    """One encoded clip -> (mono float32 waveform at sample_rate_hz cut to max_seconds, whether it was cut).

    Only the first max_seconds of frames are read, so an hour-long upload costs no more memory or time than
    a clip of the configured length.
    """
    try:
        with soundfile.SoundFile(io.BytesIO(blob)) as clip:
            source_rate = clip.samplerate
            wanted = int(np.ceil(max_seconds * source_rate))
            truncated = clip.frames > wanted
            samples = clip.read(frames=min(wanted, max(clip.frames, 0)), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise DecodeError(str(exc), AUDIO_UNDECODABLE) from exc
    mono = samples.mean(axis=1)
    if mono.size == 0 or not np.isfinite(mono).all():
        raise DecodeError("empty or non-finite audio", AUDIO_EMPTY_OR_NAN)
    if source_rate != sample_rate_hz:
        # Imported here: scipy.signal costs most of a decode worker's imports (0.8 s), and clips already at
        # the configured rate never need it.
        from scipy.signal import resample_poly

        common = gcd(int(source_rate), sample_rate_hz)
        up, down = sample_rate_hz // common, int(source_rate) // common
        mono = resample_poly(mono, up, down, window=resampling_filter(up, down)).astype(np.float32)
    return mono[: int(max_seconds * sample_rate_hz)], truncated


@lru_cache(maxsize=32)
def resampling_filter(up: int, down: int) -> np.ndarray:
    """The anti-aliasing FIR filter `resample_poly` designs by default (Kaiser, β = 5), designed once per rate
    pair instead of once per clip: the design cost more than the resampling itself (benchmarks/ingest.py)."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters.

    Written here rather than taken from librosa, whose import pulls numba into every Ray Data worker.
    """
    def hz_to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel_to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    fft_hz = np.linspace(0.0, sample_rate_hz / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate_hz / 2.0), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz[None] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - fft_hz[None]) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def spectrogram_shape(sample_rate_hz: int, max_seconds: float, n_mels: int) -> tuple[int, int]:
    hop = int(_HOP_SECONDS * sample_rate_hz)
    return n_mels, 1 + int(max_seconds * sample_rate_hz) // hop


def log_mel(waveforms: np.ndarray, sample_rate_hz: int, n_mels: int) -> np.ndarray:
    """(N, L) zero-padded waveforms -> (N, n_mels, T) log-mel spectrograms, one vectorised STFT for the batch."""
    n_fft = int(2 ** np.ceil(np.log2(_FRAME_SECONDS * sample_rate_hz)))
    hop = int(_HOP_SECONDS * sample_rate_hz)
    padded = np.pad(waveforms, ((0, 0), (n_fft // 2, n_fft // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]  # (N, T, n_fft)
    frames = frames[:, : 1 + waveforms.shape[1] // hop]
    # scipy's rfft keeps float32 in single precision (numpy's computes in float64), and |z|² skips the square
    # root: the cheapest power spectrum, equal to np.abs(np.fft.rfft(...)) ** 2 within 3e-5.
    spectrum = scipy.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=-1)  # (N, T, F) complex64
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ mel_filterbank(sample_rate_hz, n_fft, n_mels).T  # (N, T, n_mels)
    # Log compression with a fixed offset and scale: roughly unit-range features without dataset statistics.
    return ((np.log(mel + 1e-6) + 5.0) / 5.0).transpose(0, 2, 1).astype(np.float32)  # (N, n_mels, T)


def read_waveforms(blobs, sample_rate_hz: int, max_seconds: float) -> Decoded:
    """A column of encoded clips (None = missing) -> (N, L) zero-padded waveforms, presence, per-row event."""
    decode_one = partial(_waveform_cell, sample_rate_hz=sample_rate_hz, max_seconds=max_seconds)
    return decode_cells(blobs, (int(max_seconds * sample_rate_hz),), decode_one)


def _waveform_cell(blob: bytes, sample_rate_hz: int, max_seconds: float) -> tuple[np.ndarray, str | None]:
    wave, truncated = read_waveform(blob, sample_rate_hz, max_seconds)
    return wave, AUDIO_TRUNCATED if truncated else None


def decode_audios(blobs, sample_rate_hz: int, max_seconds: float, n_mels: int) -> Decoded:
    """A column of encoded clips (None = missing) -> (N, n_mels, T) float32 log-mel, presence, per-row event."""
    waveforms, present, events = read_waveforms(blobs, sample_rate_hz, max_seconds)
    spectrograms = log_mel(waveforms, sample_rate_hz, n_mels)
    spectrograms[~present] = 0.0
    return Decoded(spectrograms, present, events)
