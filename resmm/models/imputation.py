"""Missing-modality imputation in embedding space, selected by `data.impute`.

Every imputer maps `(embeddings, present) -> (embeddings, present, aux_loss)`. `zero` leaves absent modalities
masked, so the fusion ignores them. The others fill absent rows with an estimate and mark them present:
- `mean`: running mean of the modality's embeddings over present rows (the dataset mean in feature space);
- `learned`: a learned missing-modality token per modality;
- `nearest`: the modality's embedding from the nearest complete training row, matched on the modalities the
  row does have (a bank of recent complete rows, kept with the model);
- `generative`: an MLP predicts the missing embedding from the present ones, trained with a reconstruction
  loss on rows where the modality is present (the embedding-space analogue of VAE imputation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

def _mean_present(embeddings: dict, present: dict, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    e = torch.stack([embeddings[m] * present[m].unsqueeze(-1) for m in names], 1)  # (B, M, D)
    count = torch.stack([present[m] for m in names], 1).sum(1, keepdim=True)  # (B, 1)
    return e.sum(1) / count.clamp(min=1.0), count


def _fill(embeddings: dict, present: dict, m: str, estimate: torch.Tensor, usable: torch.Tensor):
    """Replace absent rows of modality m with `estimate` where `usable`, and mark them present."""
    take = (present[m] < 0.5) & usable
    embeddings[m] = torch.where(take.unsqueeze(-1), estimate.to(embeddings[m].dtype), embeddings[m])
    present[m] = torch.where(take, torch.ones_like(present[m]), present[m])


class ZeroImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()

    def forward(self, embeddings: dict, present: dict):
        return dict(embeddings), dict(present), None


class MeanImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int, momentum: float = 0.01):
        super().__init__()
        self.modalities, self.momentum = list(modalities), momentum
        self.register_buffer("means", torch.zeros(len(modalities), embed_dim))
        self.register_buffer("seen", torch.zeros(len(modalities)))

    def forward(self, embeddings: dict, present: dict):
        embeddings, present = dict(embeddings), dict(present)
        for i, m in enumerate(self.modalities):
            rows = present[m] > 0.5
            if self.training and rows.any():
                with torch.no_grad():
                    batch_mean = embeddings[m][rows].float().mean(0)
                    rate = 1.0 if self.seen[i] == 0 else self.momentum
                    self.means[i].mul_(1 - rate).add_(rate * batch_mean)
                    self.seen[i] += 1
            _fill(embeddings, present, m, self.means[i].expand_as(embeddings[m]), torch.ones_like(rows))
        return embeddings, present, None


class LearnedTokenImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.tokens = nn.Parameter(torch.zeros(len(modalities), embed_dim))

    def forward(self, embeddings: dict, present: dict):
        embeddings, present = dict(embeddings), dict(present)
        for i, m in enumerate(self.modalities):
            _fill(embeddings, present, m, self.tokens[i].expand_as(embeddings[m]), torch.ones_like(present[m] > 0))
        return embeddings, present, None


class NearestNeighbourImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int, bank_rows: int = 512):
        super().__init__()
        self.modalities = list(modalities)
        self.register_buffer("bank", torch.zeros(bank_rows, len(modalities), embed_dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _remember_complete_rows(self, embeddings: dict, present: dict) -> None:
        complete = torch.stack([present[m] > 0.5 for m in self.modalities], 1).all(1)
        rows = torch.stack([embeddings[m] for m in self.modalities], 1)[complete].float()  # (n, M, D)
        for row in rows[-self.bank.shape[0]:]:
            self.bank[self.cursor] = row
            self.cursor.copy_((self.cursor + 1) % self.bank.shape[0])
            self.filled.copy_(torch.clamp(self.filled + 1, max=self.bank.shape[0]))

    def forward(self, embeddings: dict, present: dict):
        embeddings, present = dict(embeddings), dict(present)
        if self.training:
            self._remember_complete_rows(embeddings, present)
        n = int(self.filled)
        if n == 0 or len(self.modalities) < 2:
            return embeddings, present, None
        bank = self.bank[:n]  # (K, M, D)
        mask = torch.stack([present[m] for m in self.modalities], 1).float()  # (B, M)
        query, count = _mean_present(embeddings, present, self.modalities)  # (B, D)
        keys = torch.einsum("bm,kmd->bkd", mask, bank) / count.unsqueeze(-1).clamp(min=1.0)  # (B, K, D)
        similarity = F.cosine_similarity(query.unsqueeze(1).float(), keys, dim=-1)  # (B, K)
        nearest = bank[similarity.argmax(1)]  # (B, M, D)
        usable = count.squeeze(1) > 0
        for i, m in enumerate(self.modalities):
            _fill(embeddings, present, m, nearest[:, i], usable)
        return embeddings, present, None


class GenerativeImputer(nn.Module):
    def __init__(self, modalities: list[str], embed_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        m = len(self.modalities)
        self.predictors = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(embed_dim + m, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
             for name in self.modalities}
        )

    def forward(self, embeddings: dict, present: dict):
        original = dict(embeddings)
        embeddings, present = dict(embeddings), dict(present)
        flags = torch.stack([present[m] for m in self.modalities], 1).to(original[self.modalities[0]].dtype)
        losses = []
        for i, m in enumerate(self.modalities):
            others = [o for o in self.modalities if o != m]
            if not others:
                continue
            context, count = _mean_present(original, present, others)  # (B, D)
            others_flags = flags.clone()
            others_flags[:, i] = 0
            prediction = self.predictors[m](torch.cat([context, others_flags], 1))  # (B, D)
            usable = count.squeeze(1) > 0
            target_rows = (present[m] > 0.5) & usable
            if target_rows.any():  # reconstruction loss where the truth is known
                losses.append(F.mse_loss(prediction[target_rows].float(), original[m][target_rows].detach().float()))
            else:
                losses.append(prediction.sum() * 0.0)
            _fill(embeddings, present, m, prediction, usable)
        aux = torch.stack(losses).mean() if losses else None
        return embeddings, present, aux


# `data.impute` name -> imputer class; each takes (modalities, embed_dim).
IMPUTERS = {"zero": ZeroImputer, "mean": MeanImputer, "learned": LearnedTokenImputer,
            "nearest": NearestNeighbourImputer, "generative": GenerativeImputer}


def build_imputer(name: str, modalities: list[str], embed_dim: int) -> nn.Module:
    if name not in IMPUTERS:
        raise ValueError(f"unknown imputation '{name}'")
    return IMPUTERS[name](list(modalities), embed_dim)
