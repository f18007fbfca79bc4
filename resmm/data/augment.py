"""Tensor augmentation on the worker, after resampling, so every oversampled copy gets a fresh draw.

Each modality's own augmentation lives in its record (resmm/modalities): image flip/rotate/crop, audio
(log-mel) shift/gain/noise, text token dropout.
"""
from __future__ import annotations

import torch

from resmm.modalities import MODALITIES


def augment_batch(batch: dict, modalities, generator: torch.Generator) -> dict:
    """Augment every present modality of a tensor batch; absent rows stay exact zeros."""
    out = dict(batch)
    for m in modalities:
        present = batch[f"{m}_present"].bool()
        augmented = MODALITIES[m].augment(batch[m].cpu(), generator).to(batch[m].device)
        mask = present.view(-1, *([1] * (augmented.dim() - 1)))
        out[m] = torch.where(mask, augmented, torch.zeros_like(augmented))
    return out
