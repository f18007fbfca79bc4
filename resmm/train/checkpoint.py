"""Checkpoint I/O of the training loop: one directory per epoch with the state (weights, optimizer, budget,
schedule) and that epoch's metrics, which the driver reads back to pick the best epoch; a mid-epoch checkpoint
adds the epoch's position and has no score."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import ray.train
import torch

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"
# What Ray keeps checkpoints by, and the driver registers the best of: the smoothed reading (resmm/train/budget.py),
# not the luckiest single one.
SELECTION_METRIC = "val_smoothed_balanced_accuracy"


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
