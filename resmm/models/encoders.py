"""Residual encoders, one per modality, each mapping its input batch to (B, D) embeddings (He et al. 2016).

The normalisation layer is injected (`model.norm`): BatchNorm trains fastest; GroupNorm (Wu & He 2018) does
not depend on the batch, so N DDP workers on global_batch / N rows each compute exactly what one worker
computes on the global batch (SyncBatchNorm would give that on GPUs only).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(min(8, channels), channels)


def batch_norm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


NormLayer = Callable[[int], nn.Module]
# `model.norm` name -> normalisation layer of the convolutional encoders.
NORMS: dict[str, NormLayer] = {"batch": batch_norm, "group": group_norm}


class BasicBlock2d(nn.Module):
    """ResNet basic block: two 3×3 convs with a skip connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: NormLayer = batch_norm):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = norm(out_channels)
        self.skip = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), norm(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.skip(x) + self.norm2(self.conv2(h)))


class ResNet2d(nn.Module):
    """A small ResNet over (B, C, H, W) grids (images, or log-mel spectrograms as 1-channel images) -> (B, D).

    downsample: "stride" halves the grid in each stage's first conv (ResNet's way, cheapest); "maxpool" keeps
    every conv at full resolution and max-pools after the stage, which keeps small strokes and edges that a
    stride-2 conv can step over (twice the compute; benchmarks/results/encoders.md).
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], blocks_per_stage: int, embed_dim: int,
                 norm: NormLayer = batch_norm, downsample: str = "stride"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), norm(widths[0]), nn.ReLU())
        stages, channels = [], widths[0]
        for width in widths:
            for block in range(blocks_per_stage):
                stride = 2 if block == 0 and downsample == "stride" else 1
                stages.append(BasicBlock2d(channels, width, stride=stride, norm=norm))
                channels = width
            if downsample == "maxpool":
                stages.append(nn.MaxPool2d(2))
        self.stages = nn.Sequential(*stages)
        self.project = nn.Linear(channels, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))  # (B, C_last, H', W')
        return self.project(h.mean(dim=(2, 3)))  # (B, D)


class ResidualConv1dBlock(nn.Module):
    """Pre-norm residual block over token sequences: x + Conv(GELU(Norm(x))), padding kept at zero."""

    def __init__(self, width: int, kernel_size: int = 3):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.gelu(self.norm(x)).transpose(1, 2)  # (B, W, T)
        return (x + self.conv(h).transpose(1, 2)) * mask  # (B, T, W)


class TextResConv(nn.Module):
    """Hashed token ids (B, T) -> embedding -> residual 1-D conv blocks -> masked mean pool -> (B, D)."""

    def __init__(self, vocab_buckets: int, width: int, depth: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_buckets, width, padding_idx=0)
        self.blocks = nn.ModuleList(ResidualConv1dBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.project = nn.Linear(width, embed_dim)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        mask = (token_ids != 0).unsqueeze(-1).to(self.embed.weight.dtype)  # (B, T, 1)
        h = self.embed(token_ids) * mask  # (B, T, W)
        for block in self.blocks:
            h = block(h, mask)
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, W)
        return self.project(self.norm(pooled))  # (B, D)


class AudioResNet(nn.Module):
    """Log-mel spectrograms (B, n_mels, T) -> a ResNet2d over the 1-channel time-frequency image -> (B, D)."""

    def __init__(self, resnet: ResNet2d):
        super().__init__()
        self.resnet = resnet

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return self.resnet(spectrogram.unsqueeze(1))  # (B, 1, n_mels, T) -> (B, D)
