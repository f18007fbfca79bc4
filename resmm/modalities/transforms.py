"""What the training worker does to streamed rows besides resampling (resmm/data/feed.py), in one place:
`WorkerTransforms.expand` widens each pulled chunk of cached compact features to model inputs; calling it on a
fed batch augments (`data.augment`: a fresh draw for every resampled copy) and applies ModDrop
(`train.modality_dropout`). Each modality's own augmentation lives in its record: image flip/rotate/crop, audio
(log-mel) shift/gain/noise, text token dropout."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from resmm.modalities import MODALITIES


@dataclass(frozen=True)
class WorkerTransforms:
    """The worker's transforms of one run: `expand` per pulled chunk, then `self(batch, generator)` per fed batch."""

    spec: object  # the run's PreprocessSpec
    augment: bool = False
    modality_dropout: float = 0.0

    def expand(self, chunk: dict) -> dict:
        return expand_batch(chunk, self.spec)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        """Augmentation (when on), then ModDrop, on one fed batch."""
        if self.augment:
            batch = augment_batch(batch, self.spec.modalities, generator)
        return drop_modalities(batch, self.spec.modalities, self.modality_dropout, generator)


def expand_batch(batch: dict, spec) -> dict:
    """Compact tensors -> model inputs on the batch's device (uint8 pixels normalised, fp16 and uint16 widened);
    values of absent rows become zeros, as a fresh decode leaves them. Batches already in model form (a feed
    that decodes, the pyfunc) pass through unchanged."""
    out = dict(batch)
    for m in spec.modalities:
        record = MODALITIES[m]
        values = batch[m]
        expanded = values if record.expand is None else record.expand(values, spec.settings[m])
        if expanded is values:  # already a model input
            continue
        present = batch[f"{m}_present"].to(expanded.dtype).reshape(-1, *([1] * (expanded.dim() - 1)))
        out[m] = expanded * present
    return out


def augment_batch(batch: dict, modalities, generator: torch.Generator) -> dict:
    """Augment every present modality of a tensor batch; absent rows stay exact zeros."""
    out = dict(batch)
    for m in modalities:
        present = batch[f"{m}_present"].bool()
        augmented = MODALITIES[m].augment(batch[m].cpu(), generator).to(batch[m].device)
        mask = present.view(-1, *([1] * (augmented.dim() - 1)))
        out[m] = torch.where(mask, augmented, torch.zeros_like(augmented))
    return out


def drop_modalities(batch: dict, modalities, probability: float, generator: torch.Generator) -> dict:
    """ModDrop (Neverova et al. 2016) at the fusion: hide each present modality from the imputer and the fusion
    w.p. `probability`, never all of a row's (`<m>_fusion_present`). Its own head still trains on it, since the
    head sees that modality alone and hiding it would only waste the head's rows."""
    if probability <= 0 or len(modalities) < 2:
        return batch
    present = torch.stack([batch[f"{m}_present"].cpu() > 0.5 for m in modalities], 1)  # (B, M)
    drop = (torch.rand(present.shape, generator=generator) < probability) & present
    drop &= (present & ~drop).any(1, keepdim=True)  # a row that would lose everything keeps all
    out = dict(batch)
    for i, m in enumerate(modalities):
        out[f"{m}_fusion_present"] = batch[f"{m}_present"] * (~drop[:, i]).to(batch[f"{m}_present"])
    return out
