"""The text modality: strings hashed into word and character-trigram tokens, through a residual 1-D CNN."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field

from resmm.data.lengths import TEXT_TOKENS_FALLBACK, choose_text_tokens, text_token_counts
from resmm.data.text import tokenize_texts
from resmm.modalities.base import AutoLength, Modality, Settings, string_column

if TYPE_CHECKING:  # torch is imported on use: the CPU decode tasks never load it
    import torch
    from torch import nn

TOKEN_DROP_PROB = 0.1


class TextCfg(Settings):
    # auto: the 95th percentile of a sample of the training shards, within bounds (resmm/data/lengths.py).
    max_tokens: Annotated[int, Field(ge=4, le=4096)] | Literal["auto"] = "auto"
    vocab_buckets: int = Field(8192, ge=64)  # hashing-trick vocabulary: robust to typos and new words
    max_chars: int = Field(20_000, ge=1)  # longer strings are cut (and counted) before tokenising


def decode(cells: list, cfg: TextCfg):
    return tokenize_texts(cells, cfg.max_tokens, cfg.vocab_buckets, cfg.max_chars)


def input_shape(cfg: TextCfg) -> tuple[int, ...]:
    return (cfg.max_tokens,)


def augment(token_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, T) ids: drop tokens (set to padding 0) with probability TOKEN_DROP_PROB."""
    import torch

    keep = torch.rand(token_ids.shape, generator=generator) >= TOKEN_DROP_PROB
    return token_ids * keep.to(token_ids.device)


def build_encoder(cfg: TextCfg, embed_dim: int, norm: str = "batch") -> nn.Module:
    from resmm.models.encoders import TextResConv

    return TextResConv(cfg.vocab_buckets, width=64, depth=2, embed_dim=embed_dim)


def compact(token_ids: np.ndarray, cfg: TextCfg) -> np.ndarray:
    return token_ids.astype(np.min_scalar_type(cfg.vocab_buckets - 1))  # uint16 for up to 65,536 buckets


def expand(token_ids: torch.Tensor, cfg: TextCfg) -> torch.Tensor:
    return token_ids.long()  # the same tensor when it is int64 already


def example_cell(cfg: TextCfg) -> str:
    return "an example"


def choose_max_tokens(cells: list, cfg: TextCfg):
    return choose_text_tokens(text_token_counts(cells, cfg.vocab_buckets, cfg.max_chars))


TEXT = Modality(
    name="text", settings=TextCfg, column=string_column(), decode=decode, input_shape=input_shape, augment=augment,
    build_encoder=build_encoder, example_cell=example_cell, compact=compact, expand=expand,
    auto_length=AutoLength("max_tokens", choose_max_tokens, TEXT_TOKENS_FALLBACK),
)
