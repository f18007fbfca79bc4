"""Robustness to missing modalities: accuracy per presence pattern and under random missing rates.

Each validation batch is encoded once; only imputation, fusion and the head are re-run per mask, so the
7 patterns + 30 missing-rate settings cost little more than one evaluation.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import torch

from resmm.models.predictor import FUSED_HEAD, Predictor
from resmm.train.metrics import classification_metrics

MISSING_RATES = tuple(round(0.1 * i, 1) for i in range(10))


def pattern_name(modalities) -> str:
    return "+".join(sorted(modalities))


def presence_patterns(modalities) -> list[tuple[str, ...]]:
    """All non-empty subsets of the model's modalities (7 for image/text/audio)."""
    return [combo for k in range(len(modalities), 0, -1) for combo in combinations(modalities, k)]


@torch.no_grad()
def robustness_report(model, batches, modalities, num_classes: int, seed: int = 0,
                      predictor: Predictor = FUSED_HEAD) -> dict:
    """Per presence pattern: the fused head's and `predictor`'s (the run's chosen one) accuracy; per modality and
    missing rate: the fused head's accuracy."""
    model.eval()
    modalities = list(modalities)
    patterns = presence_patterns(modalities)
    generator = torch.Generator().manual_seed(seed)
    predictions: dict[str, list] = {}
    labels: list[np.ndarray] = []

    def record(key: str, logits: torch.Tensor) -> None:
        predictions.setdefault(key, []).append(logits.argmax(1).cpu().numpy())

    for batch in batches:
        embeddings = model.encode(batch)
        present = {m: batch[f"{m}_present"] for m in modalities}
        labels.append(batch["label"].cpu().numpy())
        for pattern in patterns:  # keep only the pattern's modalities (rows lacking one stay lacking it)
            masked = {m: present[m] * float(m in pattern) for m in modalities}
            output = model.classify(embeddings, masked)
            record(f"pattern:{pattern_name(pattern)}", output.logits)
            record(f"chosen:{pattern_name(pattern)}", predictor.log_scores(output.logits, output.modality_logits,
                                                                             masked))
        for m in modalities:
            for rate in MISSING_RATES:
                dropped = torch.rand(len(batch["label"]), generator=generator) < rate
                masked = dict(present)
                masked[m] = present[m] * (~dropped).to(present[m])
                record(f"rate:{m}:{rate}", model.classify(embeddings, masked).logits)

    y_true = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    scores = {
        key: classification_metrics(y_true, np.concatenate(preds), num_classes, prefix="")
        for key, preds in predictions.items()
    }
    return {
        "patterns": {pattern_name(p): scores[f"pattern:{pattern_name(p)}"].get("accuracy") for p in patterns},
        "patterns_balanced": {
            pattern_name(p): scores[f"pattern:{pattern_name(p)}"].get("balanced_accuracy") for p in patterns
        },
        "predictor": predictor.name,
        "patterns_balanced_chosen": {
            pattern_name(p): scores[f"chosen:{pattern_name(p)}"].get("balanced_accuracy") for p in patterns
        },
        "missing_rate": {
            m: {f"{rate:.1f}": scores[f"rate:{m}:{rate}"].get("accuracy") for rate in MISSING_RATES}
            for m in modalities
        },
        "rows": int((y_true >= 0).sum()),
    }


def mean_pattern_accuracy(report: dict) -> float:
    values = [v for v in report["patterns"].values() if v is not None]
    return float(np.mean(values)) if values else float("nan")
