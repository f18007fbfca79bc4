"""The audio modality: encoded WAV/FLAC/OGG clips as log-mel spectrograms, through a residual 2-D CNN (default),
a bidirectional GRU / LSTM over mel frames, or a small Transformer over frames."""
from __future__ import annotations

import base64
import io
import math
from functools import partial
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import soundfile
from pydantic import Field

from resmm.data.audio import AUDIO_EMPTY_OR_NAN, AUDIO_UNDECODABLE, decode_audios, spectrogram_shape
from resmm.data.lengths import AUDIO_SECONDS_FALLBACK, audio_durations, choose_audio_seconds
from resmm.modalities.base import (AutoLength, Encoder, Modality, Reference, RNNOptions, Settings,
                                   TransformerOptions, binary_column)

if TYPE_CHECKING:  # torch is imported on use: the CPU decode tasks never load it
    import torch
    from torch import nn


class AudioCfg(Settings):
    sample_rate_hz: int = Field(8000, ge=1000, le=96000)  # every clip is resampled to this rate
    # auto: the 95th percentile of a sample of the training shards, within bounds (resmm/data/lengths.py).
    # Longer clips are cut (and counted).
    max_seconds: Annotated[float, Field(gt=0.0, le=60.0)] | Literal["auto"] = "auto"
    n_mels: int = Field(32, ge=8, le=256)  # mel bands of the log-mel spectrogram


def decode(cells: list, cfg: AudioCfg):
    return decode_audios(cells, cfg.sample_rate_hz, cfg.max_seconds, cfg.n_mels)


def input_shape(cfg: AudioCfg) -> tuple[int, ...]:
    return spectrogram_shape(cfg.sample_rate_hz, cfg.max_seconds, cfg.n_mels)


def augment(spectrograms: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, n_mels, T) log-mel: circular time shift up to 20%, gain ±6 dB (additive in log), light noise."""
    import torch

    b, _, t = spectrograms.shape
    shifts = (torch.rand(b, generator=generator) * 0.4 - 0.2) * t
    out = torch.stack([torch.roll(s, int(k), dims=-1) for s, k in zip(spectrograms, shifts)])
    gain = (torch.rand(b, 1, 1, generator=generator) * 2 - 1) * (math.log(10 ** (6 / 20)) ** 1) / 5.0
    noise = torch.randn(out.shape, generator=generator) * 0.05
    return out + gain.to(out) + noise.to(out)


def build_encoder(cfg: AudioCfg, embed_dim: int, norm: str = "batch") -> nn.Module:
    from resmm.models.encoders import NORMS, AudioResNet, ResNet2d

    return AudioResNet(ResNet2d(1, widths=(16, 32, 64), blocks_per_stage=1, embed_dim=embed_dim, norm=NORMS[norm]))


class FrameRNNOptions(RNNOptions):
    stack: int = Field(2, ge=1)  # consecutive mel frames per step: shorter sequences, the same information


class FrameTransformerOptions(TransformerOptions):
    stack: int = Field(2, ge=1)  # as FrameRNNOptions.stack


def build_frame_rnn(cfg: AudioCfg, embed_dim: int, norm: str, options: FrameRNNOptions, cell: str) -> nn.Module:
    from resmm.models.sequence_encoders import FrameRNN

    return FrameRNN(cfg.n_mels, options.stack, options.hidden, options.layers, cell, embed_dim, options.dropout)


def build_frame_transformer(cfg: AudioCfg, embed_dim: int, norm: str, options: FrameTransformerOptions) -> nn.Module:
    from resmm.models.sequence_encoders import FrameTransformer

    frames = input_shape(cfg)[1]
    return FrameTransformer(cfg.n_mels, frames, options.stack, options.width, options.depth, options.heads,
                            embed_dim, options.dropout)


def compact(spectrograms: np.ndarray, cfg: AudioCfg) -> np.ndarray:
    # fp16 keeps 11 significant bits: the log-mel lies in about [-1.8, 2], so the error stays under 1e-3.
    return spectrograms.astype(np.float16)


def expand(spectrograms: torch.Tensor, cfg: AudioCfg) -> torch.Tensor:
    return spectrograms.float()  # the same tensor when it is float32 already


def example_cell(cfg: AudioCfg) -> str:
    wav = io.BytesIO()
    soundfile.write(wav, np.zeros(cfg.sample_rate_hz // 10, np.float32), cfg.sample_rate_hz, format="WAV")
    return base64.b64encode(wav.getvalue()).decode()


def choose_max_seconds(cells: list, cfg: AudioCfg):
    return choose_audio_seconds(audio_durations(cells))


def build_reference(cfg: AudioCfg, num_classes: int) -> nn.Module:
    from resmm.models.reference import SpectrogramCNN

    return SpectrogramCNN(num_classes)


AUDIO = Modality(
    name="audio", settings=AudioCfg, column=binary_column("encoded WAV/FLAC/OGG bytes"), decode=decode,
    input_shape=input_shape, augment=augment, build_encoder=build_encoder, example_cell=example_cell,
    compact=compact, expand=expand,
    auto_length=AutoLength("max_seconds", choose_max_seconds, AUDIO_SECONDS_FALLBACK),
    default_encoder="resnet",
    encoders={"gru": Encoder(partial(build_frame_rnn, cell="gru"), FrameRNNOptions),
              "lstm": Encoder(partial(build_frame_rnn, cell="lstm"), FrameRNNOptions),
              "transformer": Encoder(build_frame_transformer, FrameTransformerOptions)},
    reference=Reference("audio CNN", build_reference), retrieval=True,
    faults=(AUDIO_UNDECODABLE, AUDIO_EMPTY_OR_NAN), decode_modules=("resmm.data.audio",),
)
