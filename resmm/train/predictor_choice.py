"""The final predictor, chosen on the validation split from a small fixed family of candidates (resmm/models/predictor.py).

The family: the fused head; each modality head alone; the late fusion of the heads with equal weights and with
skill weights; the fused head plus the heads, equal and skill-weighted. A part's skill is its balanced accuracy
above chance on the rows where it applies, so a head no better than chance gets no weight. Skill weights are
fitted, so their candidates are scored out of fold (fit on four fifths of the validation rows, score the fifth,
five times): the choice never rewards weights fitted to the rows that judge them.

A few hundred validation rows rank close candidates by noise, so the choice follows a one-standard-error rule
(after Breiman et al. 1984): the best candidate replaces the fused head only when it beats it by more than one
standard error of their paired difference over bootstrap resamples of the validation split's groups
(resmm/train/noise.py): rows of one group succeed or fail together, so resampling rows would understate the noise. On the stamps corpus
the plain best-on-validation choice lost 1-2 points on the stamp-disjoint holdout in three runs of six
(benchmarks/results/predictor-choice.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from resmm.data.split import SPLIT_GROUP
from resmm.models.predictor import FUSED_HEAD, Predictor
from resmm.train.metrics import classification_metrics
from resmm.train.noise import difference_standard_error

FOLDS = 5


@dataclass(frozen=True)
class ValidationOutputs:
    """What the candidates are scored on, for every validation row: labels (N,), fused logits (N, C),
    head logits per modality (N, C), presence per modality (N,), row ids (N,) and split groups (N,)."""

    labels: np.ndarray
    logits: np.ndarray
    head_logits: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    row_ids: np.ndarray | None = None  # None: 0..N-1
    groups: np.ndarray | None = None  # rows of one group are resampled together (None: each row its own)

    def __post_init__(self):
        if self.row_ids is None:
            object.__setattr__(self, "row_ids", np.arange(len(self.labels), dtype=np.int64))
        if self.groups is None:
            object.__setattr__(self, "groups", self.row_ids)

    @classmethod
    def collect(cls, model, batches) -> "ValidationOutputs":
        """Run `model` (a MultimodalResidualNet) over tensor batches once and keep every part's logits."""
        labels, logits, heads, present, row_ids, groups = [], [], {}, {}, [], []
        seen = 0  # rows collected so far: the ids of batches that carry none
        model.eval()
        with torch.no_grad():
            for batch in batches:
                output = model(batch)
                labels.append(batch["label"].cpu().numpy())
                logits.append(output.logits.float().cpu().numpy())
                for m, head in output.modality_logits.items():
                    heads.setdefault(m, []).append(head.float().cpu().numpy())
                    present.setdefault(m, []).append(batch[f"{m}_present"].float().cpu().numpy())
                ids = (batch["row_id"].cpu().numpy() if "row_id" in batch
                       else np.arange(seen, seen + len(labels[-1]), dtype=np.int64))
                seen += len(labels[-1])
                row_ids.append(ids)
                groups.append(batch[SPLIT_GROUP].cpu().numpy().astype(np.int64) if SPLIT_GROUP in batch else ids)
        if not labels:
            return cls(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), {}, {}, np.zeros(0, np.int64),
                       np.zeros(0, np.int64))
        return cls(np.concatenate(labels), np.concatenate(logits),
                   {m: np.concatenate(v) for m, v in heads.items()}, {m: np.concatenate(v) for m, v in present.items()},
                   np.concatenate(row_ids), np.concatenate(groups))

    def subset(self, rows: np.ndarray) -> "ValidationOutputs":
        return ValidationOutputs(self.labels[rows], self.logits[rows], {m: v[rows] for m, v in self.head_logits.items()},
                                 {m: v[rows] for m, v in self.present.items()}, self.row_ids[rows], self.groups[rows])

    def fused_predictions(self) -> np.ndarray:
        """(N,) the fused head's class index."""
        return self.logits.argmax(1) if len(self.labels) else np.zeros(0, np.int64)

    def head_predictions(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(labels, the modality head's class index) on the rows where that modality is present."""
        rows = self.present[modality] > 0.5
        return self.labels[rows], self.head_logits[modality][rows].argmax(1)

    def predict(self, predictor: Predictor) -> np.ndarray:
        """(N,) class index under `predictor`."""
        scores = predictor.log_scores(torch.from_numpy(self.logits),
                                      {m: torch.from_numpy(v) for m, v in self.head_logits.items()},
                                      {m: torch.from_numpy(v) for m, v in self.present.items()})
        return scores.argmax(1).numpy()


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    return classification_metrics(labels, predicted, num_classes, prefix="").get("balanced_accuracy", 0.0)


def skills(outputs: ValidationOutputs, num_classes: int) -> tuple[float, dict[str, float]]:
    """(fused skill, {modality: head skill}): balanced accuracy above chance, never below zero."""
    chance = 1.0 / num_classes
    fused = balanced_accuracy(outputs.labels, outputs.fused_predictions(), num_classes)
    heads = {}
    for m in outputs.head_logits:
        labels, predicted = outputs.head_predictions(m)
        heads[m] = balanced_accuracy(labels, predicted, num_classes) if len(labels) else 0.0
    return max(fused - chance, 0.0), {m: max(s - chance, 0.0) for m, s in heads.items()}


def fixed_candidates(modalities) -> list[Predictor]:
    """The candidates with no fitted weights, simplest first."""
    equal = {m: 1.0 for m in modalities}
    heads = [Predictor(f"head:{m}", 0.0, {m: 1.0}) for m in modalities]
    pools = [Predictor("late:equal", 0.0, equal), Predictor("fused+late:equal", 1.0, equal)] if len(modalities) > 1 \
        else []
    return [FUSED_HEAD, *heads, *pools]


def fitted_candidates(outputs: ValidationOutputs, num_classes: int) -> list[Predictor]:
    """The skill-weighted candidates, their weights fitted on `outputs` (normalised to sum to one)."""
    if len(outputs.head_logits) < 2:
        return []
    fused_skill, head_skill = skills(outputs, num_classes)
    late_total = sum(head_skill.values())
    all_total = late_total + fused_skill
    late = {m: (s / late_total if late_total else 1.0 / len(head_skill)) for m, s in head_skill.items()}
    both = {m: (s / all_total if all_total else 0.0) for m, s in head_skill.items()}
    return [Predictor("late:skill", 0.0, late),
            Predictor("fused+late:skill", fused_skill / all_total if all_total else 1.0, both)]


def fold_of_rows(rows: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(N,) fold index of each row: a seeded permutation dealt round-robin, so folds differ by at most one row."""
    fold = np.empty(rows, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(rows)] = np.arange(rows) % folds
    return fold


def out_of_fold_predictions(outputs: ValidationOutputs, num_classes: int, seed: int) -> dict[str, np.ndarray]:
    """{fitted candidate name: (N,) prediction of each row by weights fitted on the other folds (of groups)}."""
    # Folds deal out groups, not rows: weights fitted on one row of a group would recognise its twin held out.
    _, group_index = np.unique(outputs.groups, return_inverse=True)
    fold = fold_of_rows(int(group_index.max(initial=-1)) + 1, seed=seed)[group_index]
    predicted: dict[str, np.ndarray] = {}
    for k in range(FOLDS):
        held = fold == k
        if not held.any():
            continue
        for candidate in fitted_candidates(outputs.subset(~held), num_classes):
            predicted.setdefault(candidate.name, np.zeros(len(fold), dtype=np.int64))[held] = \
                outputs.subset(held).predict(candidate)
    return predicted


def paired_standard_errors(labels: np.ndarray, groups: np.ndarray, predictions: list[np.ndarray],
                           seed: int) -> list[float]:
    """For each candidate, the bootstrap standard error of its balanced accuracy minus the fused head's (index 0)
    on the same rows, resampling groups (0.0 for the fused head itself)."""
    labelled = labels >= 0
    labels, groups = labels[labelled], groups[labelled]
    hits = [(p[labelled] == labels).astype(np.float64) for p in predictions]
    return [difference_standard_error(labels, h, hits[0], groups, seed) for h in hits]


def one_standard_error_choice(scores: list[float], standard_errors: list[float]) -> int:
    """Index of the best candidate when it beats the fused head (index 0) by more than one standard error of
    their paired difference; else 0."""
    best = int(np.argmax(scores))
    return best if best != 0 and scores[best] - scores[0] > standard_errors[best] else 0


def candidate_predictor(row: dict) -> Predictor:
    """The predictor of one row of a choice's table (a summary's or MLflow's `predictor/candidates`)."""
    return Predictor(row["candidate"], row["fused_weight"], row["head_weights"])


@dataclass(frozen=True)
class PredictorChoice:
    chosen: Predictor
    table: list[dict]  # one row per candidate: name, weights, val balanced accuracy and accuracy, the standard
    # error of its difference from the fused head, how scored

    def as_summary(self) -> dict:
        return {"chosen": self.chosen.as_dict(), "candidates": self.table}


def choose_predictor(outputs: ValidationOutputs, num_classes: int, seed: int = 0) -> PredictorChoice:
    """Score the family on the validation outputs; keep the fused head unless the best beats it by more than one
    standard error."""
    if len(outputs.labels) == 0 or (outputs.labels >= 0).sum() == 0:
        return PredictorChoice(FUSED_HEAD, [])
    modalities = list(outputs.head_logits)
    scored: list[tuple[Predictor, np.ndarray, str]] = [(c, outputs.predict(c), "all rows")
                                                        for c in fixed_candidates(modalities)]
    out_of_fold = out_of_fold_predictions(outputs, num_classes, seed)
    for candidate in fitted_candidates(outputs, num_classes):
        scored.append((candidate, out_of_fold[candidate.name], f"{FOLDS}-fold out of fold"))
    standard_errors = paired_standard_errors(outputs.labels, outputs.groups, [p for _, p, _ in scored], seed)
    table = []
    for (candidate, predicted, how), se in zip(scored, standard_errors):
        metrics = classification_metrics(outputs.labels, predicted, num_classes, prefix="")
        table.append({"candidate": candidate.name, "fused_weight": candidate.fused, "head_weights": candidate.heads,
                      "val_balanced_accuracy": metrics.get("balanced_accuracy", 0.0),
                      "val_accuracy": metrics.get("accuracy", 0.0), "se_vs_fused": se, "scored_on": how})
    chosen = one_standard_error_choice([row["val_balanced_accuracy"] for row in table], standard_errors)
    return PredictorChoice(scored[chosen][0], table)
