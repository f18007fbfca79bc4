"""Mask-aware fusion of per-modality embeddings: `forward(embeddings, present) -> (B, D)`.

An absent modality (present == 0) contributes nothing: its embedding is never read as signal.
"""
from __future__ import annotations

import torch
from torch import nn


def _stack(embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor], names: list[str]):
    e = torch.stack([embeddings[m] for m in names], dim=1)  # (B, M, D)
    p = torch.stack([present[m] for m in names], dim=1).to(e.dtype).unsqueeze(-1)  # (B, M, 1)
    return e * p, p


class ConcatFusion(nn.Module):
    """Late fusion: concatenate masked embeddings plus presence flags, then project back to D."""

    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        m = len(self.modalities)
        self.project = nn.Sequential(nn.Linear(m * embed_dim + m, embed_dim), nn.GELU())

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        e, p = _stack(embeddings, present, self.modalities)  # (B, M, D), (B, M, 1)
        return self.project(torch.cat([e.flatten(1), p.flatten(1)], dim=1))  # (B, D)


class MRNFusion(nn.Module):
    """Multimodal residual learning (Kim et al. 2016, "Multimodal Residual Learning for Visual QA").

    H_0 is the mean of the present embeddings; each layer adds a residual of Hadamard interactions:
        H_l = W_l·H_{l-1} + mean_{m present} tanh(Q_l·H_{l-1}) ⊙ tanh(V_{l,m}·e_m)
    """

    def __init__(self, modalities: list[str], embed_dim: int, depth: int, dropout: float = 0.0):
        super().__init__()
        self.modalities = list(modalities)
        self.shortcuts = nn.ModuleList(nn.Linear(embed_dim, embed_dim) for _ in range(depth))
        self.queries = nn.ModuleList(nn.Linear(embed_dim, embed_dim) for _ in range(depth))
        self.values = nn.ModuleList(
            nn.ModuleDict({m: nn.Linear(embed_dim, embed_dim) for m in self.modalities}) for _ in range(depth)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        e, p = _stack(embeddings, present, self.modalities)  # (B, M, D), (B, M, 1)
        count = p.sum(1).clamp(min=1.0)  # (B, 1): rows with nothing present fuse to zeros, not NaN
        h = e.sum(1) / count  # (B, D)
        for shortcut, query, values in zip(self.shortcuts, self.queries, self.values):
            q = torch.tanh(query(h))  # (B, D)
            v = torch.stack([torch.tanh(values[m](embeddings[m])) for m in self.modalities], dim=1)  # (B, M, D)
            interaction = (q.unsqueeze(1) * v * p).sum(1) / count  # (B, D), absent modalities masked out
            h = shortcut(h) + self.dropout(interaction)
        return h
