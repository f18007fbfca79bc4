"""Checkpoint I/O of the training loop: one directory per epoch with the state (weights, optimizer, budget,
schedule) and that epoch's metrics, which the driver reads back to pick the best epoch; a mid-epoch checkpoint
adds the epoch's position and has no score."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import ray.train
import torch

from resmm.train.budget import REGISTERED_ORDER

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"
# What Ray keeps checkpoints by, and the driver registers the highest of: the order in which the budget's rule
# registered epochs (0 for an epoch it did not register).
SELECTION_METRIC = REGISTERED_ORDER


def save_checkpoint(model, optimizer, epoch: int, metrics: dict, schedule: dict) -> ray.train.Checkpoint:
    directory = Path(tempfile.mkdtemp(prefix="resmm-ckpt-"))
    torch.save(
        {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, **schedule},
        directory / STATE_FILE,
    )
    (directory / METRICS_FILE).write_text(json.dumps(metrics))
    return ray.train.Checkpoint.from_directory(str(directory))


def load_state(checkpoint: ray.train.Checkpoint) -> dict:
    """The state dict of a checkpoint, on the CPU; weights only, nothing unpickled."""
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model
