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


class MeanFusion(nn.Module):
    """Weighted average with learned weights: softmax over per-modality logits, renormalised over the
    modalities each row has."""

    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.weight_logits = nn.Parameter(torch.zeros(len(self.modalities)))

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        e, p = _stack(embeddings, present, self.modalities)  # (B, M, D), (B, M, 1)
        weights = torch.softmax(self.weight_logits, 0).view(1, -1, 1) * p  # (B, M, 1)
        return (weights * e).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, D)


class GatedFusion(nn.Module):
    """Gated multimodal unit (Arevalo et al. 2017): h_m = tanh(W_m e_m), z = softmax_m(G [e·p, p]) over the
    present modalities, fused = Σ_m z_m ⊙ h_m (multiplicative gating, per feature)."""

    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        m = len(self.modalities)
        self.transforms = nn.ModuleDict({name: nn.Linear(embed_dim, embed_dim) for name in self.modalities})
        self.gate = nn.Linear(m * embed_dim + m, m * embed_dim)

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        e, p = _stack(embeddings, present, self.modalities)  # (B, M, D), (B, M, 1)
        b, m, d = e.shape
        h = torch.stack([torch.tanh(self.transforms[n](embeddings[n])) for n in self.modalities], 1)  # (B, M, D)
        scores = self.gate(torch.cat([e.flatten(1), p.flatten(1)], 1)).view(b, m, d)  # (B, M, D)
        scores = scores.masked_fill(p == 0, float("-inf"))
        z = torch.nan_to_num(torch.softmax(scores, dim=1), nan=0.0)  # rows with nothing present -> zeros
        return (z * h * p).sum(1)  # (B, D)


class AttentionFusion(nn.Module):
    """Self-attention over modality tokens (embedding + modality type embedding), absent tokens masked as
    keys, then a masked mean over the present tokens."""

    def __init__(self, modalities: list[str], embed_dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.modalities = list(modalities)
        self.type_embedding = nn.Parameter(torch.zeros(len(self.modalities), embed_dim))
        heads = heads if embed_dim % heads == 0 else 1
        self.layer = nn.TransformerEncoderLayer(
            embed_dim, heads, dim_feedforward=2 * embed_dim, dropout=dropout, batch_first=True, norm_first=True
        )

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        e, p = _stack(embeddings, present, self.modalities)  # (B, M, D), (B, M, 1)
        tokens = e + self.type_embedding.unsqueeze(0)  # (B, M, D)
        absent = p.squeeze(-1) == 0  # (B, M)
        # A row with nothing present would mask every key (NaN); let it attend to itself and zero it below.
        key_mask = absent & ~absent.all(1, keepdim=True)
        h = self.layer(tokens, src_key_padding_mask=key_mask)  # (B, M, D)
        return (h * p).sum(1) / p.sum(1).clamp(min=1.0)  # (B, D)


class TensorFusion(nn.Module):
    """Low-rank multimodal tensor fusion (Liu et al. 2018, LMF): fused = Σ_r ∏_m (W_{m,r} [e_m; 1]).

    An absent modality enters as [0; 1], so only its learned bias row multiplies in: it contributes a
    constant, never its (zero-filled) features.
    """

    def __init__(self, modalities: list[str], embed_dim: int, rank: int = 4):
        super().__init__()
        self.modalities = list(modalities)
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(rank, embed_dim + 1, embed_dim) * (embed_dim ** -0.5))
             for m in self.modalities}
        )
        self.rank_weights = nn.Parameter(torch.ones(rank) / rank)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        product = None
        for m in self.modalities:
            x = embeddings[m] * present[m].unsqueeze(-1).to(embeddings[m].dtype)  # (B, D)
            x = torch.cat([x, torch.ones_like(x[:, :1])], 1)  # (B, D + 1)
            projected = torch.einsum("bi,rid->brd", x, self.factors[m])  # (B, R, D)
            product = projected if product is None else product * projected
        return self.norm(torch.einsum("brd,r->bd", product, self.rank_weights))  # (B, D)


# `model.fusion` name -> builder(modalities, embed_dim, depth, dropout); the fusions' own numbers live here.
FUSIONS = {
    "concat": lambda modalities, d, depth, dropout: ConcatFusion(modalities, d),
    "mean": lambda modalities, d, depth, dropout: MeanFusion(modalities, d),
    "gated": lambda modalities, d, depth, dropout: GatedFusion(modalities, d),
    "attention": lambda modalities, d, depth, dropout: AttentionFusion(modalities, d, heads=4, dropout=dropout),
    "mrn": lambda modalities, d, depth, dropout: MRNFusion(modalities, d, depth, dropout),
    "tensor": lambda modalities, d, depth, dropout: TensorFusion(modalities, d, rank=4),
}


def build_fusion(name: str, modalities: list[str], embed_dim: int, depth: int, dropout: float) -> nn.Module:
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion '{name}'")
    return FUSIONS[name](modalities, embed_dim, depth, dropout)


def classifier_head(embed_dim: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(embed_dim), nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))
