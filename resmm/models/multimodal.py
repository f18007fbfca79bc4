"""The multimodal residual network: per-modality encoders, missing-modality imputation, a fusion, a fused head,
per-modality auxiliary heads (one loss per modality), and optional retrieval projections."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from resmm.models.imputation import ZeroImputer


class MultimodalOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes), the fused head
    fused: torch.Tensor  # (B, D)
    embeddings: dict[str, torch.Tensor]  # modality -> (B, D), as encoded (before imputation)
    aux_loss: torch.Tensor | None  # imputer's reconstruction loss, when it has one
    modality_logits: dict[str, torch.Tensor]  # modality -> (B, num_classes), the auxiliary heads
    retrieval: dict[str, torch.Tensor]  # modality -> (B, R) unit vectors; empty without retrieval


class MultimodalResidualNet(nn.Module):
    """Composes built parts: `encoders[m]` maps batch[m] to (B, D); `imputer` fills absent modalities;
    `fusion` merges them under presence masks; `head` classifies the fused vector; `aux_heads[m]` classify
    each modality alone; `retrieval[m]` project into a shared space for cross-modal retrieval."""

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, head: nn.Module,
                 imputer: nn.Module | None = None, aux_heads: dict[str, nn.Module] | None = None,
                 retrieval: dict[str, nn.Module] | None = None):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.imputer = imputer if imputer is not None else ZeroImputer(list(encoders), 0)
        self.fusion = fusion
        self.head = head
        self.aux_heads = nn.ModuleDict(aux_heads or {})
        self.retrieval = nn.ModuleDict(retrieval or {})

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: encoder(batch[m]) for m, encoder in self.encoders.items()}

    def retrieval_embeddings(self, embeddings: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: F.normalize(project(embeddings[m]), dim=-1) for m, project in self.retrieval.items()}

    def classify(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> MultimodalOutput:
        """Impute, fuse and classify already-encoded modalities under a given presence mask."""
        filled, filled_present, aux_loss = self.imputer(embeddings, present)
        fused = self.fusion(filled, filled_present)  # (B, D)
        modality_logits = {m: head(embeddings[m]) for m, head in self.aux_heads.items()}
        return MultimodalOutput(self.head(fused), fused, embeddings, aux_loss, modality_logits,
                                self.retrieval_embeddings(embeddings))

    def forward(self, batch: dict[str, torch.Tensor]) -> MultimodalOutput:
        # ModDrop (resmm/data/feed.py) hides modalities from the fusion only, as `<m>_fusion_present`.
        return self.classify(self.encode(batch),
                             {m: batch.get(f"{m}_fusion_present", batch[f"{m}_present"]) for m in self.encoders})
