"""The multimodal residual network: per-modality encoders, missing-modality imputation, a fusion, a head."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from resmm.models.imputation import ZeroImputer


class MultimodalOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    fused: torch.Tensor  # (B, D)
    embeddings: dict[str, torch.Tensor]  # modality -> (B, D), as encoded (before imputation)
    aux_loss: torch.Tensor | None  # imputer's reconstruction loss, when it has one


class MultimodalResidualNet(nn.Module):
    """Composes built parts: `encoders[m]` maps batch[m] to (B, D); `imputer` fills absent modalities;
    `fusion` merges them under presence masks; `head` classifies."""

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, head: nn.Module,
                 imputer: nn.Module | None = None):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.imputer = imputer if imputer is not None else ZeroImputer(list(encoders), 0)
        self.fusion = fusion
        self.head = head

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: encoder(batch[m]) for m, encoder in self.encoders.items()}

    def classify(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> MultimodalOutput:
        """Impute, fuse and classify already-encoded modalities under a given presence mask."""
        filled, filled_present, aux_loss = self.imputer(embeddings, present)
        fused = self.fusion(filled, filled_present)  # (B, D)
        return MultimodalOutput(self.head(fused), fused, embeddings, aux_loss)

    def forward(self, batch: dict[str, torch.Tensor]) -> MultimodalOutput:
        return self.classify(self.encode(batch), {m: batch[f"{m}_present"] for m in self.encoders})
