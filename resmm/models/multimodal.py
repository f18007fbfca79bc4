"""The multimodal residual network: per-modality encoders, a fusion, and a classifier head."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class MultimodalOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    fused: torch.Tensor  # (B, D)
    embeddings: dict[str, torch.Tensor]  # modality -> (B, D)


class MultimodalResidualNet(nn.Module):
    """Composes built parts: `encoders[m]` maps batch[m] to (B, D); `fusion` merges them with presence masks."""

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, head: nn.Module):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = head

    def forward(self, batch: dict[str, torch.Tensor]) -> MultimodalOutput:
        embeddings = {m: encoder(batch[m]) for m, encoder in self.encoders.items()}
        present = {m: batch[f"{m}_present"] for m in self.encoders}
        fused = self.fusion(embeddings, present)  # (B, D)
        return MultimodalOutput(self.head(fused), fused, embeddings)
