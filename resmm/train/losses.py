"""Supervised losses for long-tailed classes, selected by `train.loss`; unlabeled rows (label -1) never count.

- `ce`: plain cross-entropy.
- `class_balanced`: cross-entropy weighted by the inverse effective number of samples (Cui et al. 2019).
- `focal`: focal loss, γ = 2 (Lin et al. 2017).
- `logit_adjusted`: cross-entropy on logits + τ·log(prior) (Menon et al. 2021, "Long-tail learning via logit
  adjustment"); at prediction time the raw logits are used, which removes the prior's bias towards the head.

`label_smoothing` (Szegedy et al. 2016) applies to every loss but focal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resmm.data.cells import UNLABELED

def _cross_entropy(loss: "LongTailLoss", logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=loss.label_smoothing)


def _class_balanced(loss: "LongTailLoss", logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    per_row = F.cross_entropy(logits, labels, weight=loss.class_weights, reduction="none",
                              label_smoothing=loss.label_smoothing)
    return per_row.sum() / loss.class_weights[labels].sum().clamp(min=1e-9)  # weighted mean, clamped


def _focal(loss: "LongTailLoss", logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return -(((1 - log_p.exp()) ** loss.gamma) * log_p).mean()


def _logit_adjusted(loss: "LongTailLoss", logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits + loss.log_prior_scaled, labels, label_smoothing=loss.label_smoothing)


# `train.loss` name -> mean loss over the labelled rows of a batch.
LOSSES = {"ce": _cross_entropy, "class_balanced": _class_balanced, "focal": _focal,
          "logit_adjusted": _logit_adjusted}


class LongTailLoss(nn.Module):
    def __init__(self, kind: str, class_counts: list[float], beta: float = 0.999, gamma: float = 2.0, tau: float = 1.0,
                 label_smoothing: float = 0.0):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss '{kind}'")
        self.kind, self.gamma, self.label_smoothing = kind, gamma, label_smoothing
        counts = torch.tensor(class_counts, dtype=torch.float32).clamp(min=1.0)
        effective = (1.0 - beta**counts) / (1.0 - beta)
        weights = 1.0 / effective
        self.register_buffer("class_weights", weights / weights.sum() * len(counts))
        self.register_buffer("log_prior_scaled", tau * torch.log(counts / counts.sum()))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        labelled = labels != UNLABELED
        if not labelled.any():
            return logits.sum() * 0.0  # keeps every parameter in the graph for DDP
        return LOSSES[self.kind](self, logits[labelled], labels[labelled])
