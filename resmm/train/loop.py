"""`train_loop_per_worker`: DDP training on one Ray Train worker, validation and a checkpoint every epoch."""
from __future__ import annotations

import contextlib
import json
import math
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
from resmm.data.augment import augment_batch
from resmm.data.batch import UNLABELED, PreprocessSpec
from resmm.data.resample import resample_rows, sampling_rates, target_shares
from resmm.models.builders import build_model
from resmm.train.budget import Budget, warmup_factor
from resmm.train.losses import LongTailLoss
from resmm.train.objectives import total_loss
from resmm.train.metrics import classification_metrics
from resmm.train.progress import EpochReporter
from resmm.tracking import runs

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"
SYSTEM_METRICS_INTERVAL_S = 5


@contextlib.contextmanager
def system_metrics(context, tracking_uri: str, run_id: str):
    """MLflow system metrics (CPU, memory, disk, network; NVIDIA GPUs through nvidia-ml-py) of this worker's
    node while the body runs, sampled by the node's first worker only: `system/...`, or
    `system/node_<rank>/...` when the workers span several nodes."""
    if context.get_local_rank() != 0:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    several_nodes = context.get_local_world_size() < context.get_world_size()
    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, resume_logging=True, tracking_uri=tracking_uri,
        node_id=f"node_{context.get_node_rank()}" if several_nodes else None,
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


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


def fused_only(output, batch: dict):
    """The simplest objective: the fused head's cross-entropy (plus the imputer's loss when it has one)."""
    loss = supervised_loss(output.logits, batch["label"])
    if output.aux_loss is not None:
        loss = loss + output.aux_loss.float()
    return loss, {}


def train_step(model, batch: dict, optimizer, scaler: torch.amp.GradScaler, precision: Precision,
               objective=fused_only) -> tuple[torch.Tensor, dict]:
    """One optimisation step under autocast; returns the detached total loss and its named components."""
    with torch.autocast(precision.device_type, dtype=precision.dtype, enabled=precision.enabled):
        loss, components = objective(model(batch), batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), components


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _global_sum(values, device: torch.device) -> torch.Tensor:
    """Element-wise sum over all workers (a no-op with one worker)."""
    tensor = torch.as_tensor(values, dtype=torch.float64, device=device).clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def drop_modalities(batch: dict, modalities, probability: float, generator: torch.Generator) -> dict:
    """ModDrop (Neverova et al. 2016): hide each present modality w.p. `probability`, never all of a row's."""
    if probability <= 0 or len(modalities) < 2:
        return batch
    present = torch.stack([batch[f"{m}_present"].cpu() > 0.5 for m in modalities], 1)  # (B, M)
    drop = (torch.rand(present.shape, generator=generator) < probability) & present
    drop &= (present & ~drop).any(1, keepdim=True)  # a row that would lose everything keeps all
    out = dict(batch)
    for i, m in enumerate(modalities):
        out[f"{m}_present"] = batch[f"{m}_present"] * (~drop[:, i]).to(batch[f"{m}_present"])
    return out


def fed_batches(shard, batch_size: int, device, rates: torch.Tensor | None, unlabeled_rate: float,
                generator: torch.Generator, shuffle_seed: int, prefetch_batches: int = 1):
    """One pass over the worker's shard as fixed-size batches; with `rates`, each streamed row is fed
    k ~ Poisson(rate[label]) times (see resmm.data.resample). Rows stream: at most one batch is buffered."""
    batches = shard.iter_torch_batches(
        batch_size=batch_size, drop_last=rates is None, device=device, local_shuffle_buffer_size=4 * batch_size,
        local_shuffle_seed=shuffle_seed, prefetch_batches=prefetch_batches,
    )
    if rates is None:
        yield from batches
        return
    pending: dict | None = None
    for batch in batches:
        index = resample_rows(batch["label"].cpu(), rates, unlabeled_rate, generator).to(batch["label"].device)
        chunk = {k: v[index] for k, v in batch.items()}
        pending = chunk if pending is None else {k: torch.cat([pending[k], chunk[k]]) for k in chunk}
        while len(pending["label"]) >= batch_size:
            yield {k: v[:batch_size] for k, v in pending.items()}
            pending = {k: v[batch_size:] for k, v in pending.items()}


def uneven_inputs(model):
    """DDP's Join: workers whose resampled pass ends early shadow the others' all-reduces instead of hanging."""
    return model.join() if isinstance(model, torch.nn.parallel.DistributedDataParallel) else contextlib.nullcontext()


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, batches, device: torch.device) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run the model over tensor batches -> (labels, fused predictions, {modality: (labels, head predictions)}
    on the rows where that modality is present)."""
    model.eval()
    labels, preds = [], []
    heads: dict[str, tuple[list, list]] = {}
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        output = model(batch)
        y = batch["label"].cpu().numpy()
        labels.append(y)
        preds.append(output.logits.argmax(1).cpu().numpy())
        for m, logits in output.modality_logits.items():
            rows = batch[f"{m}_present"].cpu().numpy() > 0.5
            heads.setdefault(m, ([], []))
            heads[m][0].append(y[rows])
            heads[m][1].append(logits.argmax(1).cpu().numpy()[rows])
    if not labels:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), {}
    per_head = {m: (np.concatenate(t), np.concatenate(p)) for m, (t, p) in heads.items()}
    return np.concatenate(labels), np.concatenate(preds), per_head


def _save_checkpoint(model, optimizer, epoch: int, metrics: dict, schedule: dict) -> ray.train.Checkpoint:
    directory = Path(tempfile.mkdtemp(prefix="resmm-ckpt-"))
    torch.save(
        {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, **schedule},
        directory / STATE_FILE,
    )
    (directory / METRICS_FILE).write_text(json.dumps(metrics))
    return ray.train.Checkpoint.from_directory(str(directory))


def epoch_rates(cfg: Config, classes, class_counts: list[int], rows: int, epoch: int,
                epochs: int) -> tuple[torch.Tensor | None, float]:
    """Per-class expected copies for this epoch (None: feed every row once), and the unlabeled rows' rate."""
    epoch_rows = cfg.data.epoch_rows or rows
    if cfg.data.resample == "none" and cfg.data.class_weights is None and epoch_rows == rows:
        return None, 1.0
    weights = None
    if cfg.data.class_weights is not None:
        weights = [cfg.data.class_weights.get(c, 0.0) for c in classes]
    shares = target_shares(cfg.data.resample, np.asarray(class_counts), epoch, epochs, weights)
    labelled_rows = max(1, sum(class_counts))
    rates = sampling_rates(shares, np.asarray(class_counts), int(epoch_rows * labelled_rows / max(rows, 1)))
    return torch.tensor(rates, dtype=torch.float32), epoch_rows / max(rows, 1)


def train_loop_per_worker(loop_config: dict) -> dict:
    """Per-worker entry point. loop_config: cfg, spec, tracking_uri, run_id, class_counts (aligned with the
    classes), train_rows (incl. unlabeled), progress_board (the driver's console; None: no progress)."""
    context = ray.train.get_context()
    with system_metrics(context, loop_config["tracking_uri"], loop_config["run_id"]):
        return train_on_worker(loop_config, context)


def train_on_worker(loop_config: dict, context) -> dict:
    cfg = Config.model_validate(loop_config["cfg"])
    spec = PreprocessSpec(**loop_config["spec"])
    class_counts = loop_config["class_counts"]
    train_rows = loop_config["train_rows"]
    board = loop_config.get("progress_board")
    rank, world = context.get_world_rank(), context.get_world_size()
    # Workers share the node's cores with Ray Data; one intra-op thread each avoids oversubscription on CPU.
    if not cfg.train.use_gpu:
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    torch.manual_seed(cfg.train.seed)
    device = ray.train.torch.get_device()
    if rank == 0:
        runs.record_worker_group_start(loop_config["tracking_uri"], loop_config["run_id"])

    model = build_model(cfg.model, spec, cfg.data.impute)
    optimizer_state, start_epoch, budget_state, plateau_state = None, 0, None, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # resume: a restarted worker group or a re-run with the same run name
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer_state, start_epoch = state["optimizer"], state["epoch"] + 1
        budget_state, plateau_state = state.get("budget"), state.get("plateau")
    elif loop_config.get("initial_weights"):  # warm start from a previous model (e.g. the champion)
        try:
            model.load_state_dict(loop_config["initial_weights"])
            if rank == 0 and board is not None:
                board.add_line.remote("[resmm] warm start: initial weights loaded")
        except RuntimeError as exc:  # a changed architecture cannot reuse the weights
            if rank == 0 and board is not None:
                board.add_line.remote(
                    f"[resmm] warm start skipped, the architecture differs: {str(exc).splitlines()[0]}")
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    budget = Budget.from_config(cfg.train)
    # Until converged: halve the learning rate when validation stalls for half the patience.
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=max(0, budget.patience // 2 - 1), threshold=budget.min_delta,
        threshold_mode="abs")
    if budget_state:
        budget.load_state_dict(budget_state)
        plateau.load_state_dict(plateau_state)
    precision = Precision.for_device(device, cfg.train.amp)
    scaler = precision.grad_scaler()
    fused_loss = LongTailLoss(cfg.train.loss, class_counts, tau=cfg.train.logit_adjust_tau).to(device)

    def objective(output, batch):
        return total_loss(output, batch, fused_loss, cfg.train.aux_loss_weight, cfg.train.retrieval_loss_weight)

    train_shard = ray.train.get_dataset_shard("train")
    val_data = ray.train.get_dataset_shard("val")
    batch_size = cfg.train.worker_batch_rows()
    num_classes = len(spec.classes)
    expected_rows = cfg.data.epoch_rows or train_rows
    rows_seen_total, train_seconds_total = 0.0, 0.0
    metrics: dict = {}
    fed_counts = torch.zeros(num_classes, dtype=torch.float64)
    warmup_steps = max(1, expected_rows // (batch_size * world)) if budget.until_converged else 0
    stop_reason, loop_started = None, time.perf_counter()

    for epoch in range(start_epoch, budget.epoch_cap):
        if not budget.until_converged:
            for group in optimizer.param_groups:
                group["lr"] = cfg.train.lr * cosine_lr_factor(epoch, budget.epoch_cap)
        # Every epoch, every rank draws afresh: copies, augmentation and dropped modalities all differ.
        draw_seed = cfg.train.seed * 1_000_003 + epoch * 1009 + rank
        generator = torch.Generator().manual_seed(draw_seed)
        rates, unlabeled_rate = epoch_rates(cfg, spec.classes, class_counts, train_rows, epoch, budget.epoch_cap)
        model.train()
        started = time.perf_counter()
        loss_sum, batches, rows = 0.0, 0, 0
        component_sums: dict[str, float] = {}
        epoch_fed = torch.zeros(num_classes, dtype=torch.float64)
        reporter = EpochReporter(board if rank == 0 else None, epoch, budget.epoch_label(epoch), expected_rows)
        with uneven_inputs(model):
            for batch in fed_batches(train_shard, batch_size, device, rates, unlabeled_rate, generator, draw_seed,
                                     cfg.data.prefetch_batches):
                if cfg.data.augment:
                    batch = augment_batch(batch, spec.modalities, generator)
                batch = drop_modalities(batch, spec.modalities, cfg.train.modality_dropout, generator)
                if warmup_steps and epoch == 0 and batches <= warmup_steps:
                    for group in optimizer.param_groups:
                        group["lr"] = cfg.train.lr * warmup_factor(batches, warmup_steps)
                loss, components = train_step(model, batch, optimizer, scaler, precision, objective)
                for name, value in components.items():
                    component_sums[name] = component_sums.get(name, 0.0) + float(value)
                labels = batch["label"].cpu()
                epoch_fed += torch.bincount(labels[labels >= 0], minlength=num_classes).double()
                loss_sum, batches, rows = loss_sum + loss.item(), batches + 1, rows + len(labels)
                reporter.update(rows * world, loss_sum / batches)  # rank 0's rows stand for every rank's
        epoch_seconds = time.perf_counter() - started
        component_names = sorted(component_sums)
        totals = _global_sum(
            [float(rows), loss_sum, float(batches), *(component_sums[n] for n in component_names)], device
        ).tolist()
        fed_counts = _global_sum(epoch_fed, device).cpu()
        epoch_rows, epoch_loss = totals[0], totals[1] / max(1.0, totals[2])
        rows_seen_total += epoch_rows
        train_seconds_total += epoch_seconds
        reporter.update(int(epoch_rows), epoch_loss, force=True)

        metrics = {
            "epoch": epoch,
            "train_loss": epoch_loss,
            "train_rows": int(epoch_rows),
            "train_samples_per_s": epoch_rows / max(epoch_seconds, 1e-9),
            **{f"train_{n}": total / max(1.0, totals[2]) for n, total in zip(component_names, totals[3:])},
        }
        checkpoint = None
        if rank == 0:
            # Validation on rank 0 over the whole (unsplit) validation set: exact metrics, no tail rows dropped.
            labels, preds, per_head = predict_dataset(
                _unwrap(model), val_data.iter_torch_batches(batch_size=256, device=device), device
            )
            metrics.update(classification_metrics(labels, preds, num_classes))
            for m, (head_labels, head_preds) in per_head.items():
                head = classification_metrics(head_labels, head_preds, num_classes, prefix=f"val_head_{m}_")
                metrics.update({k: v for k, v in head.items() if not k.endswith("confusion_matrix")})
            runs.log_epoch_metrics(loop_config["tracking_uri"], loop_config["run_id"], metrics, epoch)
            reporter.finish(
                f"[resmm] epoch {budget.epoch_label(epoch)} done in {epoch_seconds:.1f}s: "
                f"train_loss {epoch_loss:.4f}, val_accuracy {metrics.get('val_accuracy', float('nan')):.4f}, "
                f"val_balanced_accuracy {metrics.get('val_balanced_accuracy', float('nan')):.4f}, "
                f"{metrics['train_samples_per_s']:.0f} samples/s"
            )
        # Every rank takes rank 0's validation score, so all of them stop at the same epoch.
        score = float(_global_sum([metrics.get("val_balanced_accuracy", 0.0) if rank == 0 else 0.0], device)[0])
        stop_reason = budget.stop_reason(epoch, score, time.perf_counter() - loop_started)
        if budget.until_converged:
            plateau.step(score)
        if rank == 0:
            checkpoint = _save_checkpoint(model, optimizer, epoch, metrics,
                                          {"budget": budget.state_dict(), "plateau": plateau.state_dict()})
        reported = {k: v for k, v in metrics.items() if not isinstance(v, list)}
        ray.train.report(reported, checkpoint=checkpoint)
        if stop_reason:
            break

    return {
        "rows_seen_train": int(rows_seen_total),
        "train_seconds": train_seconds_total,
        "start_epoch": start_epoch,
        "epochs_run": epoch + 1 if start_epoch < budget.epoch_cap else start_epoch,
        "stop_reason": stop_reason or "resumed after the last epoch",
        "fed_class_counts": {c: int(n) for c, n in zip(spec.classes, fed_counts.tolist())},
    }
