"""How long to train, and which epoch to register: a fixed `train.epochs`, or, by default, until validation stops
improving by more than its own noise.

A few hundred validation rows in a few dozen groups read balanced accuracy with a standard error of several
points, so the default rule never treats one reading as exact (error bars from resmm/train/noise.py, a bootstrap
that resamples the split's groups):
- a gain counts when the curve smoothed over the last `SMOOTHING_EPOCHS` epochs (each row's hits averaged) rises
  above the last gain by more than `train.min_delta` and by more than one standard error of that paired
  difference (a slow, noisy rise), or when one reading beats every earlier one by more than the same (a model
  that clearly got better: on the demo, epoch-to-epoch swings are real and larger than the sampling noise);
- training stops after `train.patience` epochs without a gain, but never before `train.min_steps` optimizer steps
  (at most half of `train.max_epochs`): early readings are the noisiest, and a model trained from scratch needs
  that many steps to leave its first transient;
- the registered checkpoint is the latest epoch whose reading is within one standard error (of the paired
  difference) of the best reading: the best one where the rows can tell, more training where they cannot.

Also at `train.max_epochs`, or after `train.max_minutes`. The learning rate warms up over the first epoch and
halves when the smoothed curve stalls (`ReduceLROnPlateau`), so a long budget needs no schedule tied to a length
nobody knows in advance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from resmm.config import TrainConfig
from resmm.train.noise import balanced_hits, difference_standard_error, standard_error

SMOOTHING_EPOCHS = 3  # readings averaged into the smoothed curve: short enough to follow a real rise
REGISTERED_ORDER = "val_registered_order"  # the metric checkpoints are kept and registered by (Budget.observe)


@dataclass(frozen=True)
class Reading:
    """One epoch's validation, row by row (labelled rows only, ordered by row id): what the rule compares
    epochs on."""

    row_ids: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) class index
    groups: np.ndarray  # (N,) split group: rows of one group are resampled together
    hits: np.ndarray  # (N,) float: 1 where the fused head was right

    @classmethod
    def of(cls, row_ids: np.ndarray, labels: np.ndarray, groups: np.ndarray, predicted: np.ndarray) -> "Reading":
        labelled = labels >= 0
        order = np.argsort(row_ids[labelled], kind="stable")
        labels = labels[labelled][order]
        return cls(row_ids[labelled][order], labels, groups[labelled][order],
                   (predicted[labelled][order] == labels).astype(np.float64))

    def same_rows(self, other: "Reading") -> bool:
        return len(self.row_ids) == len(other.row_ids) and bool(np.array_equal(self.row_ids, other.row_ids))

    def with_hits(self, hits: np.ndarray) -> "Reading":
        return Reading(self.row_ids, self.labels, self.groups, hits)

    def as_state(self) -> dict:
        return {name: torch.from_numpy(np.ascontiguousarray(getattr(self, name)))
                for name in ("row_ids", "labels", "groups", "hits")}

    @classmethod
    def from_state(cls, state: dict) -> "Reading":
        return cls(*(state[name].numpy() for name in ("row_ids", "labels", "groups", "hits")))


@dataclass
class Budget:
    fixed_epochs: int | None  # train.epochs: exactly this many epochs, cosine schedule, no early stop
    max_epochs: int
    patience: int
    min_delta: float
    max_seconds: float | None
    min_steps: int = 0  # train.min_steps
    min_epochs: int = 1  # that floor in epochs of this run's data (1 where the steps per epoch are unknown)
    best_score: float = -math.inf  # the best single reading so far
    best_epoch: int = -1  # the registered epoch: the latest within the noise of the best reading
    gain_score: float = -math.inf  # the smoothed score of the last gain above the noise
    gain_epoch: int = -1  # the last epoch with a gain above the noise: patience counts from it
    threshold: float = 0.0  # what the last smoothed comparison had to beat: min_delta or the noise of the difference
    recent: list[Reading] = field(default_factory=list)  # the last SMOOTHING_EPOCHS readings (rank 0)
    gain_reading: Reading | None = None  # the smoothed hits of the last gain (rank 0)
    best_reading: Reading | None = None  # the hits of the best single reading (rank 0)

    @classmethod
    def from_config(cls, train: TrainConfig, steps_per_epoch: int | None = None) -> "Budget":
        """`steps_per_epoch` (all workers together) sizes the floor; None: no floor (the driver's description)."""
        max_seconds = train.max_minutes * 60 if train.max_minutes is not None else None
        floor = (min(math.ceil(train.min_steps / max(1, steps_per_epoch)), max(1, train.max_epochs // 2))
                 if steps_per_epoch else 1)
        return cls(train.epochs, train.max_epochs, train.patience, train.min_delta, max_seconds, train.min_steps,
                   max(1, floor))

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
        return (f"until val balanced accuracy stops rising above its noise, read alone or smoothed over "
                f"{SMOOTHING_EPOCHS} epochs (patience {self.patience}, at least {self.min_steps} steps, {cap}); "
                "set train.epochs=N for a fixed count")

    def epoch_label(self, epoch: int) -> str:
        return f"{epoch + 1}/{self.epoch_cap}" if self.fixed_epochs is not None else f"{epoch + 1}/≤{self.epoch_cap}"

    def observe(self, epoch: int, reading: Reading) -> dict:
        """Rank 0: record epoch `epoch`'s reading; returns its noise figures as metrics, with REGISTERED_ORDER
        (the epoch, from 1, when this epoch's checkpoint becomes the one to register, else 0: Ray keeps the two
        highest, and the driver registers the highest)."""
        if self.recent and not self.recent[-1].same_rows(reading):
            # Another validation set: earlier readings compare to nothing.
            self.recent, self.gain_reading, self.best_reading = [], None, None
            self.best_score = self.gain_score = -math.inf
        self.recent = [*self.recent, reading][-SMOOTHING_EPOCHS:]
        smoothed = reading.with_hits(np.mean([r.hits for r in self.recent], axis=0))
        score, raw = balanced_hits(smoothed.labels, smoothed.hits), balanced_hits(reading.labels, reading.hits)
        raw_noise = (difference_standard_error(reading.labels, reading.hits, self.best_reading.hits, reading.groups,
                                               seed=epoch) if self.best_reading is not None else 0.0)
        if self.gain_reading is None:
            self.threshold, gained = 0.0, True
        else:
            noise = difference_standard_error(smoothed.labels, smoothed.hits, self.gain_reading.hits,
                                              smoothed.groups, seed=epoch)
            self.threshold = max(self.min_delta, noise)
            # A gain: the smoothed curve rose above the last gain by more than its noise (a slow, noisy rise), or
            # this reading beat every one before it by more than theirs (a model that clearly got better).
            gained = (score > self.gain_score + self.threshold
                      or raw > self.best_score + max(self.min_delta, raw_noise))
        if gained:
            self.gain_score, self.gain_epoch, self.gain_reading = score, epoch, smoothed
        # The registered checkpoint: the latest epoch whose reading the validation rows cannot tell from the best
        # one (within one standard error of their paired difference); more training wins where they cannot tell.
        registered = raw >= self.best_score or self.best_score - raw <= raw_noise
        if raw >= self.best_score:
            self.best_score, self.best_reading = raw, reading
        if registered:
            self.best_epoch = epoch
        return {REGISTERED_ORDER: float(epoch + 1) if registered else 0.0,
                "val_smoothed_balanced_accuracy": score,
                "val_balanced_accuracy_se": standard_error(reading.labels, reading.hits, reading.groups, seed=epoch),
                "val_gain_threshold": self.threshold, "val_groups": int(len(np.unique(reading.groups)))}

    def stop_reason(self, epoch: int, elapsed_s: float) -> str | None:
        """The reason to stop after epoch `epoch` (observed on rank 0), or None to go on."""
        if epoch + 1 >= self.epoch_cap:
            return (f"train.epochs={self.fixed_epochs} done" if self.fixed_epochs is not None
                    else f"train.max_epochs={self.max_epochs} reached")
        if not self.until_converged:
            return None
        if epoch - self.gain_epoch >= self.patience and epoch + 1 >= self.min_epochs:
            # Epochs are counted from 1 here as everywhere a person reads them; the best epoch is the registered one.
            return (f"converged: no gain above the {100 * self.threshold:.1f}-point noise in val balanced accuracy "
                    f"since epoch {self.gain_epoch + 1} ({self.patience} epochs); best epoch {self.best_epoch + 1}")
        if self.max_seconds is not None and elapsed_s >= self.max_seconds:
            return f"train.max_minutes={self.max_seconds / 60:g} reached"
        return None

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "gain_score": self.gain_score,
                "gain_epoch": self.gain_epoch, "threshold": self.threshold,
                "recent": [r.as_state() for r in self.recent],
                "gain_reading": self.gain_reading.as_state() if self.gain_reading is not None else None,
                "best_reading": self.best_reading.as_state() if self.best_reading is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        # A checkpoint from before the noise-aware rule holds no readings: the next epoch's reading starts afresh.
        self.gain_score, self.gain_epoch = state.get("gain_score", self.best_score), state.get("gain_epoch",
                                                                                                self.best_epoch)
        self.threshold = state.get("threshold", 0.0)
        self.recent = [Reading.from_state(r) for r in state.get("recent", [])]
        self.gain_reading = Reading.from_state(state["gain_reading"]) if state.get("gain_reading") else None
        self.best_reading = Reading.from_state(state["best_reading"]) if state.get("best_reading") else None


def plain_patience_rule(scores: list[float], patience: int = 4, min_delta: float = 0.002) -> tuple[int, int]:
    """The rule this budget replaced, kept as the reference that tests and benchmarks/selection_rules.py replay:
    (epochs run, registered epoch) on raw readings, patience counted from the last reading above the previous
    gain by min_delta, the best raw reading registered (the latest of equal ones)."""
    best, best_epoch, gain, gain_epoch = -math.inf, -1, -math.inf, -1
    for epoch, score in enumerate(scores):
        if score >= best:
            best, best_epoch = score, epoch
        if score > gain + (min_delta if gain_epoch >= 0 else 0.0):
            gain, gain_epoch = score, epoch
        if epoch - gain_epoch >= patience:
            return epoch + 1, best_epoch
    return len(scores), best_epoch


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up of the learning rate from 10% over the first `warmup_steps` steps."""
    return 1.0 if step >= warmup_steps else 0.1 + 0.9 * step / max(1, warmup_steps)


__all__ = ["Budget", "REGISTERED_ORDER", "Reading", "SMOOTHING_EPOCHS", "plain_patience_rule", "warmup_factor"]
