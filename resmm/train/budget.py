"""How long to train: a fixed `train.epochs`, or, by default, until validation stops improving.

The default budget does not depend on the dataset's size: training stops after `train.patience` epochs without
a gain of `train.min_delta` in validation balanced accuracy, at `train.max_epochs`, or after
`train.max_minutes`. The learning rate warms up over the first epoch and halves on a plateau
(`ReduceLROnPlateau`), so a long budget does not need a schedule tied to a length nobody knows in advance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from resmm.config import TrainConfig


@dataclass
class Budget:
    fixed_epochs: int | None  # train.epochs: exactly this many epochs, cosine schedule, no early stop
    max_epochs: int
    patience: int
    min_delta: float
    max_seconds: float | None
    best_score: float = -math.inf  # the highest score so far: the epoch whose checkpoint is registered
    best_epoch: int = -1
    gain_score: float = -math.inf  # the last score that beat the one before it by min_delta: patience counts from it
    gain_epoch: int = -1

    @classmethod
    def from_config(cls, train: TrainConfig) -> "Budget":
        max_seconds = train.max_minutes * 60 if train.max_minutes is not None else None
        return cls(train.epochs, train.max_epochs, train.patience, train.min_delta, max_seconds)

    @property
    def until_converged(self) -> bool:
        return self.fixed_epochs is None

    @property
    def epoch_cap(self) -> int:
        return self.fixed_epochs if self.fixed_epochs is not None else self.max_epochs

    def describe(self) -> str:
        """One console line: which budget this run trains under."""
        if not self.until_converged:
            return f"train.epochs={self.fixed_epochs}"
        cap = f"at most {self.max_epochs} epochs" + (f" or {self.max_seconds / 60:g} min" if self.max_seconds else "")
        return (f"until val balanced accuracy stops improving (patience {self.patience}, {cap}); "
                "set train.epochs=N for a fixed count")

    def epoch_label(self, epoch: int) -> str:
        return f"{epoch + 1}/{self.epoch_cap}" if self.fixed_epochs is not None else f"{epoch + 1}/≤{self.epoch_cap}"

    def stop_reason(self, epoch: int, score: float, elapsed_s: float) -> str | None:
        """Record epoch `epoch`'s validation score; the reason to stop after it, or None to go on."""
        if score >= self.best_score:  # the latest of equal scores, as the registered checkpoint (driver.py)
            self.best_score, self.best_epoch = score, epoch
        if score > self.gain_score + (self.min_delta if self.gain_epoch >= 0 else 0.0):
            self.gain_score, self.gain_epoch = score, epoch
        if epoch + 1 >= self.epoch_cap:
            return (f"train.epochs={self.fixed_epochs} done" if self.fixed_epochs is not None
                    else f"train.max_epochs={self.max_epochs} reached")
        if not self.until_converged:
            return None
        if epoch - self.gain_epoch >= self.patience:
            # Epochs are counted from 1 here as everywhere a person reads them; the best epoch is the registered one.
            return (f"converged: no gain of {self.min_delta} in val balanced accuracy since epoch "
                    f"{self.gain_epoch + 1} ({self.patience} epochs); best epoch {self.best_epoch + 1}")
        if self.max_seconds is not None and elapsed_s >= self.max_seconds:
            return f"train.max_minutes={self.max_seconds / 60:g} reached"
        return None

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "gain_score": self.gain_score,
                "gain_epoch": self.gain_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        # A checkpoint from before the two were told apart holds the gain epoch as its best.
        self.gain_score, self.gain_epoch = state.get("gain_score", self.best_score), state.get("gain_epoch",
                                                                                                self.best_epoch)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up of the learning rate from 10% over the first `warmup_steps` steps."""
    return 1.0 if step >= warmup_steps else 0.1 + 0.9 * step / max(1, warmup_steps)


__all__ = ["Budget", "warmup_factor"]
