"""Sequence encoders, the alternatives to the residual CNNs (`model.encoders.<modality>`): a small Vision
Transformer over image patches (Dosovitskiy et al. 2021), bidirectional LSTM / GRU over tokens or mel frames,
and small Transformer encoders with learned positions (Vaswani et al. 2017), as MultiBench and TorchMultimodal
ship them. Each maps its modality's batch to (B, D) and computes every row on its own (LayerNorm, never
BatchNorm), so an absent row never changes a present one and DDP shards compute what one worker computes.
"""
from __future__ import annotations

import torch
from torch import nn


def transformer_stack(width: int, depth: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-norm Transformer layers (GELU, 2× MLP), the form that trains without warm-up at small scale."""
    layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
    # enable_nested_tensor=False: the nested fast path is inference-only and changes results with padding.
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class ClsTransformer(nn.Module):
    """(B, T, W) token vectors -> prepend a learned [CLS] token, add learned positions, encode -> (B, D) from the
    [CLS] output. The [CLS] position is never masked, so a row whose tokens are all padding stays finite."""

    def __init__(self, width: int, depth: int, heads: int, max_positions: int, embed_dim: int, dropout: float):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.positions = nn.Parameter(torch.randn(1, max_positions + 1, width) * 0.02)
        self.encoder = transformer_stack(width, depth, heads, dropout)
        self.norm = nn.LayerNorm(width)
        self.project = nn.Linear(width, embed_dim)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = tokens.shape
        h = torch.cat([self.cls.expand(b, -1, -1), tokens], 1) + self.positions[:, : t + 1]  # (B, 1+T, W)
        if padding is not None:
            padding = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=padding.device), padding], 1)
        h = self.encoder(h, src_key_padding_mask=padding)
        return self.project(self.norm(h[:, 0]))  # (B, D)


class PatchViT(nn.Module):
    """Images (B, C, S, S) -> non-overlapping patch_px × patch_px patches, linearly embedded -> ClsTransformer."""

    def __init__(self, in_channels: int, image_px: int, patch_px: int, width: int, depth: int, heads: int,
                 embed_dim: int, dropout: float):
        super().__init__()
        self.patches = nn.Conv2d(in_channels, width, patch_px, stride=patch_px)
        side = image_px // patch_px
        self.transformer = ClsTransformer(width, depth, heads, side * side, embed_dim, dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.patches(images).flatten(2).transpose(1, 2)  # (B, S/p · S/p, W)
        return self.transformer(h)


def packed_to_front(token_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids with padding 0 anywhere (token dropout leaves holes) -> the same ids in order, padding last."""
    order = torch.argsort((token_ids == 0).to(torch.int8), dim=1, stable=True)
    return torch.gather(token_ids, 1, order)


class TokenTransformer(nn.Module):
    """Hashed token ids (B, T) -> embedding -> ClsTransformer with learned positions, padding masked -> (B, D)."""

    def __init__(self, vocab_buckets: int, max_tokens: int, width: int, depth: int, heads: int, embed_dim: int,
                 dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_buckets, width, padding_idx=0)
        self.transformer = ClsTransformer(width, depth, heads, max_tokens, embed_dim, dropout)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        token_ids = packed_to_front(token_ids)
        return self.transformer(self.embed(token_ids), padding=token_ids == 0)


class BiRNN(nn.Module):
    """(B, T, F) sequences with per-row lengths -> a bidirectional LSTM or GRU -> the last forward and first
    backward states of the real (unpadded) steps, concatenated -> LayerNorm -> (B, D)."""

    def __init__(self, input_size: int, hidden: int, layers: int, cell: str, embed_dim: int, dropout: float):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(input_size, hidden, layers, batch_first=True, bidirectional=True,
                       dropout=dropout if layers > 1 else 0.0)
        self.norm = nn.LayerNorm(2 * hidden)
        self.project = nn.Linear(2 * hidden, embed_dim)

    def forward(self, sequences: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(sequences, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, state = self.rnn(packed)
        final = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        last_layer = torch.cat([final[-2], final[-1]], 1)  # (B, 2·hidden): forward, backward
        return self.project(self.norm(last_layer))


class TokenRNN(nn.Module):
    """Hashed token ids (B, T) -> embedding -> BiRNN over the real tokens only -> (B, D)."""

    def __init__(self, vocab_buckets: int, width: int, hidden: int, layers: int, cell: str, embed_dim: int,
                 dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_buckets, width, padding_idx=0)
        self.rnn = BiRNN(width, hidden, layers, cell, embed_dim, dropout)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        token_ids = packed_to_front(token_ids)
        return self.rnn(self.embed(token_ids), (token_ids != 0).sum(1))


class FrameRNN(nn.Module):
    """Log-mel spectrograms (B, n_mels, T) -> each frame a step of a BiRNN (frames stacked `stack` at a time,
    which shortens the sequence that many times) -> (B, D)."""

    def __init__(self, n_mels: int, stack: int, hidden: int, layers: int, cell: str, embed_dim: int, dropout: float):
        super().__init__()
        self.frames = FrameStack(stack)
        self.rnn = BiRNN(n_mels * stack, hidden, layers, cell, embed_dim, dropout)

    def forward(self, spectrograms: torch.Tensor) -> torch.Tensor:
        steps = self.frames(spectrograms)  # (B, T/stack, n_mels·stack)
        lengths = torch.full((steps.shape[0],), steps.shape[1], dtype=torch.long)
        return self.rnn(steps, lengths)


class FrameTransformer(nn.Module):
    """Log-mel spectrograms (B, n_mels, T) -> stacked frames, linearly embedded -> ClsTransformer -> (B, D)."""

    def __init__(self, n_mels: int, frames: int, stack: int, width: int, depth: int, heads: int, embed_dim: int,
                 dropout: float):
        super().__init__()
        self.frames = FrameStack(stack)
        self.embed = nn.Linear(n_mels * stack, width)
        self.transformer = ClsTransformer(width, depth, heads, -(-frames // stack), embed_dim, dropout)

    def forward(self, spectrograms: torch.Tensor) -> torch.Tensor:
        return self.transformer(self.embed(self.frames(spectrograms)))


class FrameStack(nn.Module):
    """(B, n_mels, T) -> (B, ceil(T / stack), n_mels · stack): consecutive frames side by side (zero-padded tail)."""

    def __init__(self, stack: int):
        super().__init__()
        self.stack = stack

    def forward(self, spectrograms: torch.Tensor) -> torch.Tensor:
        b, mels, t = spectrograms.shape
        pad = -t % self.stack
        frames = nn.functional.pad(spectrograms, (0, pad)).transpose(1, 2)  # (B, T', n_mels)
        return frames.reshape(b, (t + pad) // self.stack, mels * self.stack)
