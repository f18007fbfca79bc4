"""The text modality: strings hashed into word and character-trigram tokens (or a Hugging Face tokenizer's ids),
through a residual 1-D CNN (default), a bidirectional LSTM / GRU, a small Transformer, or a pretrained tower."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Literal, Mapping

import numpy as np
from pydantic import Field

from resmm.data.lengths import TEXT_TOKENS_FALLBACK, choose_text_tokens, text_token_counts
from resmm.data.text import (hf_token_counts, read_tokenizer, tokenize_texts, tokenize_texts_with,
                             tokenizer_vocab_size)
from resmm.modalities.base import (PRETRAINED_PREFIX, AutoLength, Encoder, Modality, PretrainedOptions, Reference,
                                   RNNOptions, Settings, TransformerOptions, string_column)

if TYPE_CHECKING:  # torch is imported on use: the CPU decode tasks never load it
    import torch
    from torch import nn

TOKEN_DROP_PROB = 0.1


class TextCfg(Settings):
    # auto: the 95th percentile of a sample of the training shards, within bounds (resmm/data/lengths.py).
    max_tokens: Annotated[int, Field(ge=4, le=4096)] | Literal["auto"] = "auto"
    vocab_buckets: int = Field(8192, ge=64)  # hashing-trick vocabulary: robust to typos and new words
    max_chars: int = Field(20_000, ge=1)  # longer strings are cut (and counted) before tokenising
    # hashed: the hashing trick (resmm/data/text.py); hf:<dir or model id>: that Hugging Face tokenizer (the
    # `pretrained` extra). model.encoders.text=hf:<source> sets it to the same source; every encoder takes it.
    tokenizer: str = Field("hashed", pattern=r"^(hashed|hf:.+)$")
    # The hf tokenizer itself (its tokenizer.json), read in when a model's spec is made (pin_tokenizer): the
    # spec saved with the model then tokenizes on any server exactly as in training. Never set by hand.
    tokenizer_json: str | None = None


def decode(cells: list, cfg: TextCfg):
    if cfg.tokenizer_json is not None:
        return tokenize_texts_with(cells, cfg.max_tokens, cfg.tokenizer_json, cfg.max_chars)
    return tokenize_texts(cells, cfg.max_tokens, cfg.vocab_buckets, cfg.max_chars)


def pin_tokenizer(cfg: TextCfg) -> TextCfg:
    """An hf tokenizer read in, with vocab_buckets its vocabulary plus the padding id 0 that resmm adds."""
    if cfg.tokenizer == "hashed" or cfg.tokenizer_json is not None:
        return cfg
    tokenizer_json = read_tokenizer(cfg.tokenizer.removeprefix("hf:"))
    return cfg.model_copy(update={"tokenizer_json": tokenizer_json,
                                  "vocab_buckets": max(64, tokenizer_vocab_size(tokenizer_json) + 1)})


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


class TokenRNNOptions(RNNOptions):
    width: int = Field(64, ge=4)  # token embedding


def build_token_rnn(cfg: TextCfg, embed_dim: int, norm: str, options: TokenRNNOptions, cell: str) -> nn.Module:
    from resmm.models.sequence_encoders import TokenRNN

    return TokenRNN(cfg.vocab_buckets, options.width, options.hidden, options.layers, cell, embed_dim,
                    options.dropout)


def build_token_transformer(cfg: TextCfg, embed_dim: int, norm: str, options: TransformerOptions) -> nn.Module:
    from resmm.models.sequence_encoders import TokenTransformer

    return TokenTransformer(cfg.vocab_buckets, cfg.max_tokens, options.width, options.depth, options.heads,
                            embed_dim, options.dropout)


def build_pretrained(cfg: TextCfg, embed_dim: int, source: str, options) -> nn.Module:
    from resmm.models.pretrained import PretrainedText

    if cfg.tokenizer != f"hf:{source}":
        raise ValueError(f"model.encoders.text=hf:{source} needs data.text.tokenizer=hf:{source} "
                         f"(got {cfg.tokenizer})")
    return PretrainedText.load(source, embed_dim, options)


def compact(token_ids: np.ndarray, cfg: TextCfg) -> np.ndarray:
    return token_ids.astype(np.min_scalar_type(cfg.vocab_buckets - 1))  # uint16 for up to 65,536 buckets


def expand(token_ids: torch.Tensor, cfg: TextCfg) -> torch.Tensor:
    return token_ids.long()  # the same tensor when it is int64 already


def example_cell(cfg: TextCfg) -> str:
    return "an example"


def choose_max_tokens(cells: list, cfg: TextCfg):
    if cfg.tokenizer != "hashed":  # counted as the tokenizer that will be used counts them
        return choose_text_tokens(hf_token_counts(cells, pin_tokenizer(cfg).tokenizer_json, cfg.max_chars))
    return choose_text_tokens(text_token_counts(cells, cfg.vocab_buckets, cfg.max_chars))


def build_reference(cfg: TextCfg, num_classes: int) -> nn.Module:
    from resmm.models.reference import BagOfTokens

    return BagOfTokens(cfg.vocab_buckets, num_classes)


def follow_encoder(cfg: TextCfg, encoder: str | None) -> TextCfg:
    """An hf tower (model.encoders.text=hf:<source>) tokenizes with its own tokenizer unless another hf one is named."""
    if encoder and encoder.startswith(PRETRAINED_PREFIX) and cfg.tokenizer == "hashed":
        return cfg.model_copy(update={"tokenizer": encoder})
    return cfg


def needs_pretrained(saved: Mapping) -> bool:
    return str(saved.get("tokenizer", "hashed")) != "hashed"  # an hf tokenizer runs on `tokenizers`


TEXT = Modality(
    name="text", settings=TextCfg, column=string_column(), decode=decode, input_shape=input_shape, augment=augment,
    build_encoder=build_encoder, example_cell=example_cell, compact=compact, expand=expand,
    auto_length=AutoLength("max_tokens", choose_max_tokens, TEXT_TOKENS_FALLBACK),
    default_encoder="resconv",
    encoders={"lstm": Encoder(partial(build_token_rnn, cell="lstm"), TokenRNNOptions),
              "gru": Encoder(partial(build_token_rnn, cell="gru"), TokenRNNOptions),
              "transformer": Encoder(build_token_transformer, TransformerOptions)},
    pretrained=Encoder(build_pretrained, PretrainedOptions), pin_files=pin_tokenizer, follow_encoder=follow_encoder,
    needs_pretrained=needs_pretrained,
    reference=Reference("text EmbeddingBag", build_reference), retrieval=True, decode_modules=("resmm.data.text",),
)
