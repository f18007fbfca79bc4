"""The small models a user would write by hand, one per modality: the reference recipe's (resmm/baselines) and
what each modality record names as its reference (`Modality.reference`)."""
from __future__ import annotations

import torch
from torch import nn

TEXT_EMBED_DIM = 64


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(), nn.MaxPool2d(2)
    )


class SmallCNN(nn.Module):
    """3 x (conv 3x3 -> BatchNorm -> ReLU -> max-pool 2), global average pool, linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        channels = (in_channels, *widths)
        self.blocks = nn.Sequential(*(conv_block(a, b) for a, b in zip(channels[:-1], channels[1:])))
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(x)  # (B, 128, H/8, W/8)
        return self.classifier(features.mean(dim=(2, 3)))  # (B, K)


class SpectrogramCNN(nn.Module):
    """The image CNN on a log-mel spectrogram, read as a 1-channel (n_mels, frames) image."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.cnn = SmallCNN(1, num_classes)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return self.cnn(spectrogram.unsqueeze(1))  # (B, n_mels, T) -> (B, 1, n_mels, T) -> (B, K)


class BagOfTokens(nn.Module):
    """Mean of the token embeddings (padding id 0 left out of the mean), then a linear classifier."""

    def __init__(self, vocab_buckets: int, num_classes: int, embed_dim: int = TEXT_EMBED_DIM):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_buckets, embed_dim, mode="mean", padding_idx=0)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bag(token_ids))  # (B, T) -> (B, D) -> (B, K)
