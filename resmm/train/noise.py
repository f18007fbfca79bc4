"""How noisy a validation reading is: balanced accuracy under a cluster bootstrap that resamples the split's groups
(Efron & Tibshirani 1993, ch. 6; Field & Welsh 2007 for clustered data), so that the rows of one group, which a
model gets right or wrong together, count as one draw and not as many.

A row's group is its split group: the `data.group_column` cell it was split by, else its own sample_id, so a
corpus without groups is resampled row by row. Every rule that reads validation (the budget's stop rule, the
registered checkpoint, the final predictor's one-standard-error rule) takes its error bars from here.
"""
from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 200


def group_weights(groups: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """(R, N) how many times each row is drawn in each of R resamples: every group is drawn Poisson(1) times
    (the Poisson bootstrap), all of its rows with it."""
    _, group_index = np.unique(groups, return_inverse=True)
    draws = np.random.default_rng(seed).poisson(1.0, (resamples, int(group_index.max(initial=-1)) + 1))
    return draws[:, group_index].astype(np.float64)


def balanced_hits(labels: np.ndarray, hits: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | float:
    """Balanced accuracy from each labelled row's hit (1 right, 0 wrong, or a fraction: the mean over a window
    of epochs): the mean over the classes present of the class's mean hit. With (R, N) `weights`, (R,) one
    value per resample (a class absent from a resample is left out of its mean)."""
    classes, class_index = np.unique(labels, return_inverse=True)
    onehot = np.eye(len(classes))[class_index]  # (N, C)
    if weights is None:
        return float(np.mean((hits @ onehot) / onehot.sum(0))) if len(labels) else 0.0
    seen = weights @ onehot  # (R, C)
    recall = np.where(seen > 0, (weights * hits) @ onehot / np.maximum(seen, 1e-12), np.nan)
    return np.nanmean(recall, axis=1)


def standard_error(labels: np.ndarray, hits: np.ndarray, groups: np.ndarray, seed: int) -> float:
    """Bootstrap standard error of the balanced accuracy of `hits`, resampling groups."""
    if len(labels) == 0:
        return 0.0
    return float(np.nanstd(balanced_hits(labels, hits, group_weights(groups, seed))))


def difference_standard_error(labels: np.ndarray, hits: np.ndarray, reference_hits: np.ndarray, groups: np.ndarray,
                              seed: int) -> float:
    """Bootstrap standard error of balanced accuracy(hits) - balanced accuracy(reference_hits) on the same rows,
    resampling groups: the paired difference, whose noise is smaller than either reading's."""
    if len(labels) == 0:
        return 0.0
    weights = group_weights(groups, seed)
    return float(np.nanstd(balanced_hits(labels, hits, weights) - balanced_hits(labels, reference_hits, weights)))


__all__ = ["BOOTSTRAP_RESAMPLES", "balanced_hits", "difference_standard_error", "group_weights", "standard_error"]
