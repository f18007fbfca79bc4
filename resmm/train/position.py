"""Where an epoch stands, so that a checkpoint taken in the middle of it resumes it instead of restarting it.

A row's copies in an epoch are a function of its id and the epoch's seed (resmm.data.resample.drawn_copies), so
the position is the set of rows trained so far with their copies, over every worker together: whatever worker
streams a row after the restart (the worker count may differ) feeds only the copies that are left. The order
of the stream does not matter, and a resumed epoch trains no row twice and misses none (ray#37633, #48224: Ray
Data's iterator restarts an epoch from its first row).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist


def merged_counts(row_ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique ids, summed counts) of possibly repeated ids."""
    unique, inverse = np.unique(row_ids.astype(np.int64), return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)


@dataclass
class RowTally:
    """Copies per row id, accumulated batch by batch on one worker (one entry per fed copy until merged)."""

    chunks: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)

    def add(self, row_ids: torch.Tensor, copies: torch.Tensor | None = None) -> None:
        ids = row_ids.cpu().numpy().astype(np.int64)
        self.chunks.append(ids)
        self.weights.append(np.ones(len(ids), np.int64) if copies is None else copies.cpu().numpy().astype(np.int64))

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return merged_counts(np.concatenate(self.chunks), np.concatenate(self.weights))

    def gathered(self) -> tuple[np.ndarray, np.ndarray]:
        """Every worker's counts merged (an all-gather: every rank must call it at the same point)."""
        ids, counts = self.counts()
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return ids, counts
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (ids, counts))
        return merged_counts(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


@dataclass
class EpochPosition:
    """An epoch part-way through: the copies trained per row id, every worker together, and the running sums of
    the epoch's training metrics (rows, loss, batches, loss components, fed rows per class) up to that point."""

    epoch: int
    row_ids: np.ndarray  # sorted, unique
    copies: np.ndarray
    sums: dict

    @property
    def rows(self) -> int:
        return int(self.copies.sum())

    def trained_copies(self, row_ids: torch.Tensor) -> torch.Tensor:
        """Copies of each of these rows already trained in this epoch (0 for rows not seen yet)."""
        ids = row_ids.cpu().numpy().astype(np.int64)
        if not len(self.row_ids):
            return torch.zeros(len(ids), dtype=torch.long)
        at = np.clip(np.searchsorted(self.row_ids, ids), 0, len(self.row_ids) - 1)
        return torch.from_numpy(np.where(self.row_ids[at] == ids, self.copies[at], 0)).long()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "row_ids": torch.from_numpy(self.row_ids),
                "copies": torch.from_numpy(self.copies), "sums": self.sums}

    @classmethod
    def from_state(cls, state: dict) -> "EpochPosition":
        return cls(state["epoch"], state["row_ids"].numpy(), state["copies"].numpy(), state["sums"])
