"""Classification metrics from sklearn, computed on labelled rows only."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, prefix: str = "val_") -> dict:
    """accuracy, balanced accuracy (mean recall over the classes present), macro-F1 and the confusion matrix."""
    labelled = y_true >= 0
    y_true, y_pred = y_true[labelled], y_pred[labelled]
    if y_true.size == 0:
        return {f"{prefix}rows": 0}
    seen = sorted(set(y_true.tolist()))
    with warnings.catch_warnings():
        # sklearn warns when a predicted class never occurs in y_true; that is expected on small splits.
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y_true, y_pred)
    return {
        f"{prefix}rows": int(y_true.size),
        f"{prefix}accuracy": float(accuracy_score(y_true, y_pred)),
        f"{prefix}balanced_accuracy": float(balanced),
        f"{prefix}macro_f1": float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0)),
        f"{prefix}confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(num_classes))).tolist(),
    }


def balanced_log_loss(y_true: np.ndarray, logits: np.ndarray) -> float:
    """Class-balanced log-loss of the labelled rows: the mean over the classes present of the mean -log p(label).
    Smoother than balanced accuracy (it moves with every row's confidence, not only with its argmax)."""
    labelled = y_true >= 0
    y_true, logits = y_true[labelled], logits[labelled].astype(np.float64)
    if y_true.size == 0:
        return float("nan")
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted[np.arange(len(y_true)), y_true] - np.log(np.exp(shifted).sum(1))
    return float(np.mean([-log_p[y_true == c].mean() for c in np.unique(y_true)]))
