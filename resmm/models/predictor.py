"""The final predictor: a weighted pool of the fused head's and the modality heads' log-probabilities.

Every candidate the run chooses from (resmm/train/predictor_choice.py) is one `Predictor`: the fused head alone is
`fused=1`, a modality head alone is `heads={m: 1}`, a late fusion is weights on several heads. A row is scored only
by the heads of the modalities it has, so a row missing a modality gets the weights of the ones present; a row with
no weighted part present falls back to the fused head. The pool is a weighted geometric mean of the parts'
distributions (a logarithmic opinion pool, as a product of experts), so its softmax stays a distribution.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Predictor:
    name: str
    fused: float = 1.0  # weight of the fused head's log-probabilities
    heads: dict[str, float] = field(default_factory=dict)  # modality -> weight of its head, where present

    def log_scores(self, logits: torch.Tensor, head_logits: dict[str, torch.Tensor],
                   present: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C) pooled log-probabilities; `present[m]` is (B,) with 1.0 where modality m is present."""
        fused = F.log_softmax(logits.float(), dim=1)  # (B, C)
        pooled = self.fused * fused
        total = torch.full((len(logits), 1), float(self.fused), device=logits.device)  # (B, 1)
        for modality, weight in self.heads.items():
            if weight == 0.0 or modality not in head_logits:
                continue
            on = present[modality].float().reshape(-1, 1) * weight  # (B, 1)
            pooled = pooled + on * F.log_softmax(head_logits[modality].float(), dim=1)
            total = total + on
        has_weight = total > 0
        return torch.where(has_weight, pooled / total.clamp(min=1e-12), fused)

    def probabilities(self, logits, head_logits, present) -> torch.Tensor:
        return torch.softmax(self.log_scores(logits, head_logits, present), dim=1)

    def as_dict(self) -> dict:
        return {"name": self.name, "fused": self.fused, "heads": dict(self.heads)}

    @classmethod
    def from_dict(cls, payload: dict | None) -> "Predictor":
        """The bundle's predictor; a bundle from before the choice existed serves the fused head."""
        if not payload:
            return FUSED_HEAD
        return cls(payload["name"], float(payload["fused"]), {m: float(w) for m, w in payload["heads"].items()})


FUSED_HEAD = Predictor("fused")
