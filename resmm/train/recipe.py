"""The imbalance treatment chosen from the data when `train.loss` / `data.resample` say `auto` (the default).

The profile pass counts the classes before training. When the largest class outnumbers the smallest by at least
`LONG_TAIL_RATIO`, the fused head trains with logit adjustment (Menon et al. 2021) on the natural class mix;
otherwise with plain cross-entropy. Resampling stays off under `auto`: logit adjustment already removes the
prior's bias, and re-weighting the mix on top of it corrects twice. Resampling repeats the tail's few rows
(overfitting them) and drops head rows each epoch: balanced resampling lost 3.7 points against plain
cross-entropy on the demo (docs/benchmarks.md, "Results on the demo") and 19.5 points on an unseen 12-class
corpus, where logit adjustment gained 13.6.
An explicit setting of either key is kept; `auto` on the other one then picks no second correction.
"""
from __future__ import annotations

from dataclasses import dataclass

from resmm.config import Config

LONG_TAIL_RATIO = 3.0


def imbalance_ratio(class_counts: dict[str, int] | list[int]) -> float:
    """Largest over smallest count among the classes that have rows (1.0 when fewer than two do)."""
    counts = [n for n in (class_counts.values() if isinstance(class_counts, dict) else class_counts) if n > 0]
    return max(counts) / min(counts) if len(counts) >= 2 else 1.0


@dataclass(frozen=True)
class Recipe:
    loss: str
    resample: str
    imbalance_ratio: float
    reason: str

    def as_params(self) -> dict:
        """MLflow params: what `auto` resolved to and the figure that drove it."""
        return {"recipe.loss": self.loss, "recipe.resample": self.resample,
                "recipe.imbalance_ratio": round(self.imbalance_ratio, 3)}


def choose_recipe(cfg: Config, class_counts: dict[str, int] | list[int]) -> Recipe:
    ratio = imbalance_ratio(class_counts)
    loss, resample = cfg.train.loss, cfg.data.resample
    resampled = resample not in ("auto", "none") or cfg.data.class_weights is not None
    if loss == "auto":
        if resampled:
            loss, why = "ce", "data.resample corrects the class mix already"
        elif ratio >= LONG_TAIL_RATIO:
            loss, why = "logit_adjusted", f"imbalance ratio {ratio:.1f} >= {LONG_TAIL_RATIO:g}"
        else:
            loss, why = "ce", f"imbalance ratio {ratio:.1f} < {LONG_TAIL_RATIO:g}"
    else:
        why = f"train.loss={loss} as configured"
    if resample == "auto":
        resample = "none"
        why += "; no resampling" + (" on top of it" if resampled or loss != "ce" else "")
    return Recipe(loss, resample, ratio, why)


def apply_recipe(cfg: Config, recipe: Recipe) -> Config:
    """The config with `auto` replaced by the recipe's choices (what the workers train with)."""
    resolved = cfg.model_copy(deep=True)
    resolved.train.loss = recipe.loss
    resolved.data.resample = recipe.resample
    return resolved
