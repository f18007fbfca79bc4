"""Plots that people would rather look at than read, rendered headless for MLflow."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
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


def robustness_figure(report: dict):
    """Left: the fused head's accuracy and balanced accuracy, and the chosen predictor's balanced accuracy, per
    presence pattern; right: accuracy vs random missing rate."""
    figure, (bars, lines) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(report["patterns"])
    x = np.arange(len(names))
    chosen = report.get("patterns_balanced_chosen")
    width = 0.27 if chosen else 0.4
    bars.bar(x - width, [report["patterns"][n] or 0 for n in names], width, label="accuracy (fused head)")
    bars.bar(x, [report["patterns_balanced"][n] or 0 for n in names], width, label="balanced accuracy (fused head)")
    if chosen:
        bars.bar(x + width, [chosen[n] or 0 for n in names], width,
                 label=f"balanced accuracy ({report.get('predictor', 'chosen')})")
    bars.set_xticks(x, names, rotation=30, ha="right")
    bars.set_ylim(0, 1)
    bars.set_title("validation rows restricted to a presence pattern")
    bars.legend()
    for modality, curve in report["missing_rate"].items():
        rates = [float(r) for r in curve]
        lines.plot(rates, [curve[r] or 0 for r in curve], marker="o", label=f"{modality} missing")
    lines.set_xlabel("share of validation rows with the modality removed")
    lines.set_ylabel("accuracy")
    lines.set_ylim(0, 1)
    lines.set_title("accuracy under random missing rates")
    lines.legend()
    figure.tight_layout()
    return figure


def validation_curve_figure(curves: dict, best_epoch: int, title: str):
    """Validation balanced accuracy per epoch with its bootstrap error bar (one standard error), the smoothed curve
    the stop rule and the checkpoint read, and the registered epoch marked. `curves`: {flat metric key:
    {epoch (from 0): value}}."""
    raw, se = curves.get("val_balanced_accuracy", {}), curves.get("val_balanced_accuracy_se", {})
    smoothed = curves.get("val_smoothed_balanced_accuracy", {})
    figure, axis = plt.subplots(figsize=(8, 4.5))
    epochs = sorted(raw)
    axis.errorbar([e + 1 for e in epochs], [raw[e] for e in epochs], yerr=[se.get(e, 0.0) for e in epochs],
                  fmt="o", capsize=3, alpha=0.7, label="reading ± 1 bootstrap SE (groups resampled)")
    axis.plot([e + 1 for e in sorted(smoothed)], [smoothed[e] for e in sorted(smoothed)], "-",
              label="smoothed over 3 epochs (the stop rule reads it too)")
    axis.axvline(best_epoch + 1, color="grey", linestyle="--", label=f"registered epoch {best_epoch + 1}")
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_ylabel("val balanced accuracy")
    axis.set_title(title, fontsize=9, wrap=True)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
