"""Plots that people would rather look at than read, rendered headless for MLflow."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_figure(matrix, classes, title: str = "validation confusion matrix"):
    """Row-normalised confusion matrix (recall per true class) with raw counts in the cells."""
    counts = np.asarray(matrix, dtype=float)
    recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    size = max(4.0, 0.6 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                axis.text(j, i, int(counts[i, j]), ha="center", va="center",
                          color="white" if recall[i, j] > 0.5 else "black", fontsize=8)
    figure.tight_layout()
    return figure


def close(figure) -> None:
    plt.close(figure)
