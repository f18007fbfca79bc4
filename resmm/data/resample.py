"""Class resampling on the stream: per-row Poisson copy counts drawn afresh every epoch.

Ray Data has no weighted or stratified streaming sampler (ray-project/ray#31127). resmm draws, for every
streamed row of class c, k ~ Poisson(rate_c) copies with rate_c = target_share_c · epoch_rows / n_c: the
minority is oversampled, the majority undersampled, every worker sees the same expected class mix, and
nothing is materialised.

- `none`: target share ∝ n_c (rates = epoch_rows / rows).
- `balanced`: equal shares.
- `sqrt`: share ∝ √n_c.
- `progressive`: share ∝ n_c^(1 - t), t = epoch / (epochs - 1): instance-balanced to class-balanced
  (Kang et al. 2020, "Decoupling Representation and Classifier").
- explicit `data.class_weights`: share ∝ n_c · w_c.

On the training feed a row's copies are a function of its identity and the epoch's seed (`drawn_copies`), not of
its place in the stream: a resumed epoch draws every row's copies exactly as the interrupted one did, so rows
trained before a mid-epoch checkpoint can be subtracted (resmm/train/position.py).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import poisson

def _instance_shares(counts: np.ndarray, t: float) -> np.ndarray:
    return counts.copy()


def _balanced_shares(counts: np.ndarray, t: float) -> np.ndarray:
    return (counts > 0).astype(np.float64)


def _sqrt_shares(counts: np.ndarray, t: float) -> np.ndarray:
    return np.sqrt(counts)


def _progressive_shares(counts: np.ndarray, t: float) -> np.ndarray:
    return np.where(counts > 0, counts ** (1.0 - t), 0.0)


# `data.resample` name -> unnormalised class shares given the counts and t = epoch / (epochs - 1).
RESAMPLERS = {"none": _instance_shares, "balanced": _balanced_shares, "sqrt": _sqrt_shares,
              "progressive": _progressive_shares}


def target_shares(strategy: str, counts: np.ndarray, epoch: int = 0, epochs: int = 1, class_weights=None) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if class_weights is not None:
        shares = counts * np.asarray(class_weights, dtype=np.float64)
    elif strategy in RESAMPLERS:
        shares = RESAMPLERS[strategy](counts, epoch / max(1, epochs - 1))
    else:
        raise ValueError(f"unknown resampling strategy '{strategy}'")
    return shares / shares.sum()


def sampling_rates(shares: np.ndarray, counts: np.ndarray, epoch_rows: int) -> np.ndarray:
    """Expected copies per streamed row of each class so that an epoch holds epoch_rows rows in `shares`."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.where(counts > 0, shares * epoch_rows / np.maximum(counts, 1.0), 0.0)


def resample_rows(labels: torch.Tensor, rates: torch.Tensor, unlabeled_rate: float, generator: torch.Generator):
    """Row indices of the batch to feed: row i repeated k_i ~ Poisson(rate[label_i]) times (unlabeled rows at
    `unlabeled_rate`), shuffled."""
    row_rates = torch.where(labels >= 0, rates[labels.clamp(min=0)], torch.full_like(rates[:1], unlabeled_rate))
    copies = torch.poisson(row_rates.float().cpu(), generator=generator).long()
    index = torch.repeat_interleave(torch.arange(len(labels)), copies)
    return index[torch.randperm(len(index), generator=generator)]


def uniform_of(row_ids: np.ndarray, seed: int) -> np.ndarray:
    """One U[0, 1) per row from its 64-bit id and the seed (SplitMix64's finaliser): the same row and seed
    always give the same number, whichever worker streams it and in whatever order."""
    with np.errstate(over="ignore"):
        z = row_ids.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def drawn_copies(row_ids: torch.Tensor, labels: torch.Tensor, rates: torch.Tensor | None, unlabeled_rate: float,
                 seed: int) -> torch.Tensor:
    """Copies of each row to feed this epoch: k ~ Poisson(rate[label]) drawn by inverting the CDF at the row's
    own uniform (`uniform_of`); 1 each when `rates` is None (every row once)."""
    if rates is None:
        return torch.ones(len(labels), dtype=torch.long)
    labels = labels.cpu()
    row_rates = torch.where(labels >= 0, rates[labels.clamp(min=0)], torch.full_like(rates[:1], unlabeled_rate))
    copies = poisson.ppf(uniform_of(row_ids.cpu().numpy(), seed), row_rates.double().numpy())
    return torch.from_numpy(np.nan_to_num(copies, nan=0.0)).long().clamp(min=0)  # rate 0 gives nan: no copy
