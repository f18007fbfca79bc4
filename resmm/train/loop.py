"""`train_loop_per_worker`: DDP training on one Ray Train worker, validation and a checkpoint every epoch."""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from resmm.config import Config
from resmm.data.batch import UNLABELED, PreprocessSpec
from resmm.models.builders import build_model
from resmm.train.metrics import classification_metrics
from resmm.tracking import runs

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"


def report_progress(message: str) -> None:
    """Progress line from a worker: straight to stderr, which Ray forwards to the driver once.

    (Ray Train routes `print` through its logger, which echoes every line twice on the driver.)
    """
    sys.__stderr__.write(f"[resmm] {message}\n")
    sys.__stderr__.flush()


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled rows only; a batch with no labels contributes zero, never NaN."""
    labelled = (labels != UNLABELED).sum().clamp(min=1)
    return F.cross_entropy(logits.float(), labels, ignore_index=UNLABELED, reduction="sum") / labelled


def cosine_lr_factor(epoch: int, epochs: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


@dataclass(frozen=True)
class Precision:
    """Mixed precision for one worker: autocast dtype plus a grad scaler (needed for fp16 only)."""

    enabled: bool
    dtype: torch.dtype
    device_type: str

    @classmethod
    def for_device(cls, device: torch.device, amp: bool) -> "Precision":
        enabled = amp and device.type == "cuda"
        bf16 = enabled and torch.cuda.is_bf16_supported()
        return cls(enabled, torch.bfloat16 if bf16 or not enabled else torch.float16, device.type)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.enabled and self.dtype == torch.float16)


def train_step(model, batch: dict, optimizer, scaler: torch.amp.GradScaler, precision: Precision) -> torch.Tensor:
    """One optimisation step under autocast; returns the (detached) loss."""
    with torch.autocast(precision.device_type, dtype=precision.dtype, enabled=precision.enabled):
        loss = supervised_loss(model(batch).logits, batch["label"])
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _global_sum(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, batches, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Run the model over an iterable of tensor batches -> (labels, predicted class indices)."""
    model.eval()
    labels, preds = [], []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(batch).logits
        labels.append(batch["label"].cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
    if not labels:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(labels), np.concatenate(preds)


def _save_checkpoint(model, optimizer, epoch: int, metrics: dict) -> ray.train.Checkpoint:
    directory = Path(tempfile.mkdtemp(prefix="resmm-ckpt-"))
    torch.save(
        {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
        directory / STATE_FILE,
    )
    (directory / METRICS_FILE).write_text(json.dumps(metrics))
    return ray.train.Checkpoint.from_directory(str(directory))


def train_loop_per_worker(loop_config: dict) -> dict:
    """Per-worker entry point. loop_config: cfg (dict), spec (dict), tracking_uri, run_id, expected_train_rows."""
    cfg = Config.model_validate(loop_config["cfg"])
    spec = PreprocessSpec(**loop_config["spec"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # Workers share the node's cores with Ray Data; one intra-op thread each avoids oversubscription on CPU.
    if not cfg.train.use_gpu:
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    torch.manual_seed(cfg.train.seed)
    device = ray.train.torch.get_device()

    model = build_model(cfg.model, spec)
    optimizer_state, start_epoch = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # resume: a restarted worker group or a re-run with the same run name
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer_state, start_epoch = state["optimizer"], state["epoch"] + 1
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    precision = Precision.for_device(device, cfg.train.amp)
    scaler = precision.grad_scaler()

    train_shard = ray.train.get_dataset_shard("train")
    val_data = ray.train.get_dataset_shard("val")
    batch_size = cfg.train.batch_size_per_worker
    expected_batches = max(1, loop_config["expected_train_rows"] // (batch_size * world))
    rows_seen_total, train_seconds_total = 0.0, 0.0
    metrics: dict = {}

    for epoch in range(start_epoch, cfg.train.epochs):
        for group in optimizer.param_groups:
            group["lr"] = cfg.train.lr * cosine_lr_factor(epoch, cfg.train.epochs)
        model.train()
        started = time.perf_counter()
        loss_sum, batches, rows = 0.0, 0, 0
        for batch in train_shard.iter_torch_batches(
            batch_size=batch_size, drop_last=True, device=device, local_shuffle_buffer_size=4 * batch_size
        ):
            loss = train_step(model, batch, optimizer, scaler, precision)
            loss_sum, batches, rows = loss_sum + loss.item(), batches + 1, rows + len(batch["label"])
            if rank == 0 and batches % max(1, expected_batches // 4) == 0:
                report_progress(
                    f"epoch {epoch + 1}/{cfg.train.epochs} "
                    f"{min(100, 100 * batches // expected_batches):3d}% loss {loss_sum / batches:.4f}"
                )
        epoch_seconds = time.perf_counter() - started
        epoch_rows = _global_sum(float(rows), device)
        epoch_loss = _global_sum(loss_sum, device) / max(1.0, _global_sum(float(batches), device))
        rows_seen_total += epoch_rows
        train_seconds_total += epoch_seconds

        metrics = {
            "epoch": epoch,
            "train_loss": epoch_loss,
            "train_rows": int(epoch_rows),
            "train_samples_per_s": epoch_rows / max(epoch_seconds, 1e-9),
        }
        checkpoint = None
        if rank == 0:
            # Validation on rank 0 over the whole (unsplit) validation set: exact metrics, no tail rows dropped.
            labels, preds = predict_dataset(
                _unwrap(model), val_data.iter_torch_batches(batch_size=256, device=device), device
            )
            metrics.update(classification_metrics(labels, preds, len(spec.classes)))
            runs.log_metrics(loop_config["tracking_uri"], loop_config["run_id"], metrics, step=epoch)
            report_progress(
                f"epoch {epoch + 1}/{cfg.train.epochs} done in {epoch_seconds:.1f}s: "
                f"train_loss {epoch_loss:.4f}, val_accuracy {metrics.get('val_accuracy', float('nan')):.4f}, "
                f"val_balanced_accuracy {metrics.get('val_balanced_accuracy', float('nan')):.4f}, "
                f"{metrics['train_samples_per_s']:.0f} samples/s"
            )
            checkpoint = _save_checkpoint(model, optimizer, epoch, metrics)
        reported = {k: v for k, v in metrics.items() if not isinstance(v, list)}
        ray.train.report(reported, checkpoint=checkpoint)

    return {
        "rows_seen_train": int(rows_seen_total),
        "train_seconds": train_seconds_total,
        "start_epoch": start_epoch,
    }
