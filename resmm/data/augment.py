"""Tensor augmentation on the worker, after resampling, so every oversampled copy gets a fresh draw.

images: flip, small rotation, random crop; audio (log-mel): time shift, gain, noise; text: token dropout.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W): random horizontal flip, rotation within ±15°, and a random 85–100% crop."""
    b = images.shape[0]
    device = images.device
    flip = torch.rand(b, generator=generator) < 0.5
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(15)
    scale = 0.85 + 0.15 * torch.rand(b, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - scale)[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, shift[:, 0]], 1), torch.stack([sin * sign, cos, shift[:, 1]], 1)], 1
    ).to(device=device, dtype=images.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


def augment_spectrograms(spectrograms: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, n_mels, T) log-mel: circular time shift up to 20%, gain ±6 dB (additive in log), light noise."""
    b, _, t = spectrograms.shape
    shifts = (torch.rand(b, generator=generator) * 0.4 - 0.2) * t
    out = torch.stack([torch.roll(s, int(k), dims=-1) for s, k in zip(spectrograms, shifts)])
    gain = (torch.rand(b, 1, 1, generator=generator) * 2 - 1) * (math.log(10 ** (6 / 20)) ** 1) / 5.0
    noise = torch.randn(out.shape, generator=generator) * 0.05
    return out + gain.to(out) + noise.to(out)


def augment_tokens(token_ids: torch.Tensor, generator: torch.Generator, drop_prob: float = 0.1) -> torch.Tensor:
    """(B, T) ids: drop tokens (set to padding 0) with probability drop_prob."""
    keep = torch.rand(token_ids.shape, generator=generator) >= drop_prob
    return token_ids * keep.to(token_ids.device)


AUGMENTERS = {"image": augment_images, "audio": augment_spectrograms, "text": augment_tokens}


def augment_batch(batch: dict, modalities, generator: torch.Generator) -> dict:
    """Augment every present modality of a tensor batch; absent rows stay exact zeros."""
    out = dict(batch)
    for m in modalities:
        present = batch[f"{m}_present"].bool()
        augmented = AUGMENTERS[m](batch[m].cpu(), generator).to(batch[m].device)
        mask = present.view(-1, *([1] * (augmented.dim() - 1)))
        out[m] = torch.where(mask, augmented, torch.zeros_like(augmented))
    return out
