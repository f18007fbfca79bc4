"""The multi-loss objective: fused head + per-modality auxiliary heads + imputer reconstruction + InfoNCE.

Every head trains on the fused head's imbalance treatment (the same `LongTailLoss`): a head on plain
cross-entropy leans to the frequent classes on long-tailed data, and the final predictor may be that head
(resmm/train/predictor_choice.py)."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from resmm.data.cells import UNLABELED

RETRIEVAL_TEMPERATURE = 0.1


def head_loss(logits: torch.Tensor, labels: torch.Tensor, present: torch.Tensor, loss_fn) -> torch.Tensor:
    """`loss_fn` (the fused head's loss) of one modality's head over labelled rows where the modality is present."""
    rows = (labels != UNLABELED) & (present > 0.5)
    if not rows.any():
        return logits.sum() * 0.0  # keeps the head in the graph for DDP
    return loss_fn(logits[rows], labels[rows])


def info_nce(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between paired unit vectors (Oord et al. 2018; CLIP's form) over rows with both."""
    if rows.sum() < 2:
        return (a.sum() + b.sum()) * 0.0
    a, b = a[rows].float(), b[rows].float()
    logits = a @ b.T / RETRIEVAL_TEMPERATURE  # (n, n)
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def total_loss(output, batch: dict, fused_loss_fn, aux_weight: float, retrieval_weight: float):
    """(loss, components): components hold detached per-part losses for logging."""
    labels = batch["label"]
    fused = fused_loss_fn(output.logits, labels)
    components = {"loss_fused": fused.detach()}
    loss = fused
    if output.modality_logits:
        heads = {m: head_loss(logits, labels, batch[f"{m}_present"], fused_loss_fn) for m, logits in output.modality_logits.items()}
        components.update({f"loss_head_{m}": v.detach() for m, v in heads.items()})
        loss = loss + aux_weight * torch.stack(list(heads.values())).mean()
    if output.aux_loss is not None:
        components["loss_impute"] = output.aux_loss.detach()
        loss = loss + output.aux_loss.float()
    if output.retrieval:
        pairs = [
            info_nce(output.retrieval[a], output.retrieval[b],
                     (batch[f"{a}_present"] > 0.5) & (batch[f"{b}_present"] > 0.5))
            for a, b in itertools.combinations(sorted(output.retrieval), 2)
        ]
        if pairs:
            retrieval = torch.stack(pairs).mean()
            components["loss_retrieval"] = retrieval.detach()
            loss = loss + retrieval_weight * retrieval
    return loss, components
