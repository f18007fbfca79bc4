"""`train_loop_per_worker`: DDP training on one Ray Train worker, validation and a checkpoint every epoch.

The recipe's shape (as torchtune's): `setup` builds the worker's state (model, optimizer, budget, restored from a
checkpoint when one exists), then each epoch is `train_one_epoch`, `validate` on rank 0, and a checkpoint.
Checkpoints are also taken inside an epoch (`train.checkpoint_every_minutes` / `_steps`) with the epoch's position
(resmm/train/position.py), and a restart resumes from there."""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from dataclasses import dataclass, field

import ray.train
import ray.train.torch
import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from resmm.config import Config
from resmm.modalities.spec import PreprocessSpec
from resmm.modalities.transforms import WorkerTransforms
from resmm.data.feed import EpochPulls, batches_of, epoch_rates, within_deadline
from resmm.modalities.network import build_model
from resmm.train.budget import Budget, Reading, warmup_factor
from resmm.train.losses import LongTailLoss
from resmm.train.objectives import total_loss
from resmm.train.predictor_choice import ValidationOutputs
from resmm.train.metrics import balanced_log_loss, classification_metrics
from resmm.train.progress import EpochReporter
from resmm.train.checkpoint import SELECTION_METRIC, load_state, save_checkpoint, unwrap
from resmm.train.position import EpochPosition, RowTally
from resmm.tracking import runs

SYSTEM_METRICS_INTERVAL_S = 5
VALIDATION_BATCH_ROWS = 256


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


def stall_seconds(cfg: Config) -> float | None:
    minutes = cfg.data.stall_timeout_minutes
    return 60 * minutes if minutes else None


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


def train_step(model, batch: dict, optimizer, scaler: torch.amp.GradScaler, precision: Precision,
               objective) -> tuple[torch.Tensor, dict]:
    """One optimisation step under autocast; returns the detached total loss and its named components."""
    with torch.autocast(precision.device_type, dtype=precision.dtype, enabled=precision.enabled):
        loss, components = objective(model(batch), batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), components


def _global_sum(values, device: torch.device) -> torch.Tensor:
    """Element-wise sum over all workers (a no-op with one worker)."""
    tensor = torch.as_tensor(values, dtype=torch.float64, device=device).clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def uneven_inputs(model):
    """DDP's Join: workers whose resampled pass ends early shadow the others' all-reduces instead of hanging."""
    return model.join() if isinstance(model, torch.nn.parallel.DistributedDataParallel) else contextlib.nullcontext()


def train_loop_per_worker(loop_config: dict) -> dict:
    """Per-worker entry point. loop_config: cfg, spec, tracking_uri, run_id, class_counts (aligned with the
    classes), train_rows (incl. unlabeled), initial_weights, progress_board (the driver's console; None: none)."""
    context = ray.train.get_context()
    with system_metrics(context, loop_config["tracking_uri"], loop_config["run_id"]):
        return train_on_worker(loop_config, context)


@dataclass
class WorkerState:
    """One worker's training state; `setup` builds it, the epoch functions advance it."""

    cfg: Config
    spec: PreprocessSpec
    loop_config: dict
    rank: int
    world: int
    device: torch.device
    model: torch.nn.Module  # DDP-wrapped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision
    fused_loss: torch.nn.Module
    budget: Budget
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau
    start_epoch: int
    warmup_steps: int  # linear warm-up over the first epoch when training until converged
    fed_counts: torch.Tensor  # rows fed per class in the last epoch, all workers (zeros before the first)
    rows_seen: float = 0.0
    train_seconds: float = 0.0
    stop_reason: str | None = None
    started: float = field(default_factory=time.perf_counter)
    reporter: EpochReporter | None = None  # the current epoch's progress line (rank 0 draws it)
    epoch_seconds: float = 0.0
    ema: AveragedModel | None = None  # rank 0's moving average of the weights (train.ema_decay), when on
    position: EpochPosition | None = None  # the epoch a mid-epoch checkpoint interrupted, until it is resumed
    resumed_within_epoch: dict = field(default_factory=dict)
    last_checkpoint_at: float = field(default_factory=time.monotonic)
    steps_since_checkpoint: int = 0

    @property
    def evaluated_model(self) -> torch.nn.Module:
        """What validation scores and the checkpoint registers: the averaged weights when on, else the trained."""
        return self.ema.module if self.ema is not None else unwrap(self.model)

    @property
    def board(self):
        """The driver's console, rank 0 only (None elsewhere or when there is no console)."""
        return self.loop_config.get("progress_board") if self.rank == 0 else None

    def checkpoint_due(self) -> bool:
        """Whether this worker's clock or step count calls for a mid-epoch checkpoint after the next step."""
        train = self.cfg.train
        return bool((train.checkpoint_every_steps and self.steps_since_checkpoint + 1 >= train.checkpoint_every_steps)
                    or (train.checkpoint_every_minutes
                        and time.monotonic() - self.last_checkpoint_at >= 60 * train.checkpoint_every_minutes))

    def objective(self, output, batch):
        return total_loss(output, batch, self.fused_loss, self.cfg.train.aux_loss_weight,
                          self.cfg.train.retrieval_loss_weight)


def setup(loop_config: dict, context, cfg: Config, restored: dict | None) -> WorkerState:
    """The worker's state, from the checkpoint's state dict `restored` when the run resumes."""
    spec: PreprocessSpec = loop_config["spec"]
    rank = context.get_world_rank()
    torch.manual_seed(cfg.train.seed)
    device = ray.train.torch.get_device()
    if rank == 0:
        runs.record_worker_group_start(loop_config["tracking_uri"], loop_config["run_id"])
    model = build_model(cfg.model, spec, cfg.data.impute)
    board = loop_config.get("progress_board") if rank == 0 else None
    if restored:  # an averaged run checkpoints the averaged weights as "model", the trained ones beside them
        model.load_state_dict(restored.get("trained_model", restored["model"]))
    elif loop_config.get("initial_weights"):
        note = warm_start(model, loop_config["initial_weights"])
        if board is not None:
            board.add_line.remote(note)
    ddp_model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(ddp_model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    world = context.get_world_size()
    expected_rows = cfg.data.epoch_rows or loop_config["train_rows"]
    steps_per_epoch = max(1, expected_rows // (cfg.train.worker_batch_rows() * world))
    budget = Budget.from_config(cfg.train, steps_per_epoch)
    # Until converged: halve the learning rate when the smoothed validation curve stalls for half the patience.
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=max(0, budget.patience // 2 - 1), threshold=budget.min_delta,
        threshold_mode="abs")
    precision = Precision.for_device(device, cfg.train.amp)
    state = WorkerState(
        cfg, spec, loop_config, rank, world, device, ddp_model, optimizer, precision.grad_scaler(), precision,
        LongTailLoss(cfg.train.loss, loop_config["class_counts"], tau=cfg.train.logit_adjust_tau,
                     label_smoothing=cfg.train.label_smoothing).to(device),
        budget, plateau, start_epoch=0,
        warmup_steps=steps_per_epoch if budget.until_converged else 0,
        fed_counts=torch.zeros(len(spec.classes), dtype=torch.float64),
    )
    if rank == 0 and cfg.train.ema_decay is not None:
        state.ema = weight_average(ddp_model, cfg.train.ema_decay)
    if restored:
        restore(state, restored)
    return state


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the weights and the BatchNorm statistics (Polyak & Juditsky 1992;
    AutoGluon and timm validate and ship the averaged weights): smoother than the last step's weights."""
    return AveragedModel(unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def restore(state: WorkerState, restored: dict) -> None:
    """Continue after the checkpoint's epoch (or inside it, from a mid-epoch checkpoint) with its optimizer, budget
    and schedule."""
    state.optimizer.load_state_dict(restored["optimizer"])
    state.start_epoch = resumed_epoch(restored)
    if restored.get("position"):
        state.position = EpochPosition.from_state(restored["position"])
        state.resumed_within_epoch = {"epoch": state.position.epoch + 1, "trained_rows": state.position.rows}
    if state.ema is not None and restored.get("ema"):
        state.ema.load_state_dict(restored["ema"])
    if restored.get("budget"):
        state.budget.load_state_dict(restored["budget"])
        state.plateau.load_state_dict(restored["plateau"])


def resumed_epoch(restored: dict | None) -> int:
    """The epoch a run starts at: 0, after its checkpoint's epoch, or inside it (a mid-epoch checkpoint)."""
    if not restored:
        return 0
    position = restored.get("position")
    return EpochPosition.from_state(position).epoch if position else restored["epoch"] + 1


def warm_start(model: torch.nn.Module, weights: dict) -> str:
    """Start from a previous model's weights (e.g. the champion's) when the architecture still matches;
    returns the line that says which happened."""
    try:
        model.load_state_dict(weights)
        return "[resmm] warm start: initial weights loaded"
    except RuntimeError as exc:
        return f"[resmm] warm start skipped, the architecture differs: {str(exc).splitlines()[0]}"


def train_on_worker(loop_config: dict, context) -> dict:
    cfg = Config.model_validate(loop_config["cfg"])
    # Workers share the node's cores with Ray Data; one intra-op thread each avoids oversubscription on CPU.
    if not cfg.train.use_gpu:
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    checkpoint = ray.train.get_checkpoint()  # a restarted worker group, or a re-run with the same run name
    restored = load_state(checkpoint) if checkpoint else None
    epochs = range(resumed_epoch(restored), Budget.from_config(cfg.train).epoch_cap)
    # The stream starts before the model is built, so Ray Data's start of the first epoch (planning, the first
    # reads: 0.3-1.5 s on 2 CPUs) overlaps the build, the DDP set-up and the restore instead of the first step.
    pulls = EpochPulls(ray.train.get_dataset_shard("train"),
                       {e: draw_seed(cfg, e, context.get_world_rank()) for e in epochs}, cfg.train.worker_batch_rows(),
                       ray.train.torch.get_device(), cfg.data.prefetch_batches, stall_seconds(cfg))
    epoch = epochs.start
    try:
        state = setup(loop_config, context, cfg, restored)
        val_data = ray.train.get_dataset_shard("val")
        for epoch in epochs:
            metrics = train_one_epoch(state, epoch, pulls)
            if state.rank == 0:
                scored, reading = validate(state, val_data)
                metrics.update(scored, **state.budget.observe(epoch, reading))
                runs.log_epoch_metrics(loop_config["tracking_uri"], loop_config["run_id"], metrics, epoch)
            end_epoch(state, epoch, metrics)
            if state.stop_reason:
                break
    finally:
        pulls.close()
    return {
        "rows_seen_train": int(state.rows_seen),
        "train_seconds": state.train_seconds,
        "start_epoch": state.start_epoch,
        "epochs_run": epoch + 1 if state.start_epoch < state.budget.epoch_cap else state.start_epoch,
        "stop_reason": state.stop_reason or "resumed after the last epoch",
        "fed_class_counts": {c: int(n) for c, n in zip(state.spec.classes, state.fed_counts.tolist())},
        "resumed_within_epoch": state.resumed_within_epoch,
    }


def lockstep(batches, device, due):
    """(batch, checkpoint now) pairs. While every worker still has a batch, the workers agree before each step,
    in one all-reduce of two numbers, that all of them go on and whether any is due a checkpoint, so a mid-epoch
    checkpoint (a Ray Train report: a barrier) happens at the same step everywhere. Once a worker is out of rows,
    the others feed their last batches under DDP's Join, without checkpoints."""
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    together = True
    for batch in batches:
        checkpoint_now = due()
        if together and distributed:
            flags = torch.tensor([1, -int(checkpoint_now)], dtype=torch.int64, device=device)
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
            together, checkpoint_now = bool(flags[0] == 1), bool(flags[1] < 0)
        yield batch, checkpoint_now and together
    if together and distributed:  # tell the others, waiting in the all-reduce of their next step
        dist.all_reduce(torch.zeros(2, dtype=torch.int64, device=device), op=dist.ReduceOp.MIN)


@dataclass
class EpochSums:
    """This worker's running sums over an epoch; rank 0's start from a resumed position's (all workers')."""

    classes: int
    rows: float = 0.0
    loss: float = 0.0
    batches: float = 0.0
    steps: int = 0  # lockstep steps, the same on every worker (the warm-up counts them)
    components: dict = field(default_factory=dict)
    fed: torch.Tensor | None = None

    def __post_init__(self):
        self.fed = torch.zeros(self.classes, dtype=torch.float64) if self.fed is None else self.fed

    @classmethod
    def resumed(cls, classes: int, position: EpochPosition | None, rank: int) -> "EpochSums":
        if position is None:
            return cls(classes)
        saved = position.sums
        if rank != 0:
            return cls(classes, steps=saved["steps"])
        return cls(classes, saved["rows"], saved["loss"], saved["batches"], saved["steps"], dict(saved["components"]),
                   torch.tensor(saved["fed"], dtype=torch.float64))

    def add(self, labels: torch.Tensor, loss: float, parts: dict) -> None:
        for name, value in parts.items():
            self.components[name] = self.components.get(name, 0.0) + float(value)
        self.fed += torch.bincount(labels[labels >= 0], minlength=self.classes).double()
        self.rows, self.loss, self.batches, self.steps = (self.rows + len(labels), self.loss + loss,
                                                          self.batches + 1, self.steps + 1)

    def totals(self, device: torch.device) -> dict:
        """Every worker's sums together (an all-reduce)."""
        names = sorted(self.components)
        values = _global_sum([self.rows, self.loss, self.batches, *(self.components[n] for n in names)],
                             device).tolist()
        return {"rows": values[0], "loss": values[1], "batches": values[2], "steps": self.steps,
                "components": dict(zip(names, values[3:])), "fed": _global_sum(self.fed, device).cpu().tolist()}


def draw_seed(cfg: Config, epoch: int, rank: int) -> int:
    """Every epoch, every rank draws afresh: its stream's local shuffle, copies' order, augmentation and ModDrop."""
    return cfg.train.seed * 1_000_003 + epoch * 1009 + rank


def epoch_feed(state: WorkerState, epoch: int, pulls: EpochPulls, generator: torch.Generator,
               transforms: WorkerTransforms, position, drawn: RowTally | None):
    """The epoch's fed batches: this epoch's class rates, each row's copies less those a resumed epoch trained."""
    cfg = state.cfg
    rates, unlabeled_rate = epoch_rates(cfg.data, state.spec.classes, state.loop_config["class_counts"],
                                        state.loop_config["train_rows"], epoch, state.budget.epoch_cap)
    return batches_of(pulls.chunks(epoch), cfg.train.worker_batch_rows(), rates, unlabeled_rate, generator,
                      expand=transforms.expand, copies_seed=draw_seed(cfg, epoch, rank=0),  # the same on every rank
                      trained_before=position.trained_copies if position is not None else None,
                      on_drawn=drawn.add if drawn is not None else None)


def train_one_epoch(state: WorkerState, epoch: int, pulls: EpochPulls) -> dict:
    """One pass over this worker's shard (or what is left of it after a mid-epoch checkpoint); returns the epoch's
    training metrics summed over every worker."""
    cfg, spec = state.cfg, state.spec
    if not state.budget.until_converged:
        for group in state.optimizer.param_groups:
            group["lr"] = cfg.train.lr * cosine_lr_factor(epoch, state.budget.epoch_cap)
    generator = torch.Generator().manual_seed(draw_seed(cfg, epoch, state.rank))
    transforms = WorkerTransforms(spec, cfg.data.augment, cfg.train.modality_dropout)
    position = state.position if state.position is not None and state.position.epoch == epoch else None
    state.position = None
    sums = EpochSums.resumed(len(spec.classes), position, state.rank)
    trained, drawn = RowTally(), RowTally() if state.loop_config.get("fed_rows_dir") else None
    if position is not None and state.rank == 0:  # counted once, by rank 0, in every later gather
        trained.add(torch.from_numpy(position.row_ids), torch.from_numpy(position.copies))
    state.model.train()
    started = time.perf_counter()
    reporter = EpochReporter(state.board, epoch, state.budget.epoch_label(epoch),
                             cfg.data.epoch_rows or state.loop_config["train_rows"])
    feed = epoch_feed(state, epoch, pulls, generator, transforms, position, drawn)
    with uneven_inputs(state.model):
        for batch, checkpoint_now in lockstep(feed, state.device, state.checkpoint_due):
            batch = transforms(batch, generator)
            if state.warmup_steps and epoch == 0 and sums.steps <= state.warmup_steps:
                for group in state.optimizer.param_groups:
                    group["lr"] = cfg.train.lr * warmup_factor(sums.steps, state.warmup_steps)
            loss, parts = train_step(state.model, batch, state.optimizer, state.scaler, state.precision,
                                     state.objective)
            if state.ema is not None:
                state.ema.update_parameters(unwrap(state.model))
            if "row_id" in batch:
                trained.add(batch["row_id"])
            sums.add(batch["label"].cpu(), loss.item(), parts)
            state.steps_since_checkpoint += 1
            reporter.update(int(sums.rows) * state.world, sums.loss / max(1.0, sums.batches))
            if checkpoint_now:
                checkpoint_within_epoch(state, epoch, trained, sums)
    seconds = time.perf_counter() - started
    totals = sums.totals(state.device)
    if drawn is not None:
        record_fed_rows(state, epoch, trained, drawn)
    state.fed_counts = torch.tensor(totals["fed"], dtype=torch.float64)
    fresh_rows = totals["rows"] - (position.sums["rows"] if position is not None else 0.0)  # this attempt's
    state.rows_seen += fresh_rows
    state.train_seconds += seconds
    batches = max(1.0, totals["batches"])
    reporter.update(int(totals["rows"]), totals["loss"] / batches, force=True)
    state.reporter, state.epoch_seconds = reporter, seconds
    return {
        "epoch": epoch,
        "train_loss": totals["loss"] / batches,
        "train_rows": int(totals["rows"]),
        "train_samples_per_s": fresh_rows / max(seconds, 1e-9),
        **{f"train_{n}": total / batches for n, total in totals["components"].items()},
    }


def checkpoint_within_epoch(state: WorkerState, epoch: int, trained: RowTally, sums: EpochSums) -> None:
    """Every worker: gather the rows trained so far and the epoch's sums; rank 0 writes them with the weights.
    The checkpoint scores -1, below every balanced accuracy, so Ray keeps it only while it is the latest, and the
    driver never registers it. (Not NaN: Ray's snapshot of its checkpoints writes NaN as null, and a controller
    that restores it after a head loss then fails on the null.)"""
    row_ids, copies = trained.gathered()
    position = EpochPosition(epoch, row_ids, copies, sums.totals(state.device))
    metrics = {"epoch": epoch, "within_epoch": True, "trained_rows": position.rows, SELECTION_METRIC: -1.0}
    checkpoint = write_checkpoint(state, epoch, metrics, position) if state.rank == 0 else None
    ray.train.report(metrics, checkpoint=checkpoint)
    state.last_checkpoint_at, state.steps_since_checkpoint = time.monotonic(), 0


def write_checkpoint(state: WorkerState, epoch: int, metrics: dict, position: EpochPosition | None = None):
    """Rank 0's checkpoint: the evaluated weights, optimizer, budget and schedule (the trained weights and the
    average too, when averaging), and a mid-epoch position when there is one."""
    averaged = ({"trained_model": unwrap(state.model).state_dict(), "ema": state.ema.state_dict()}
                if state.ema is not None else {})
    extra = {"position": position.state_dict()} if position is not None else {}
    return save_checkpoint(state.evaluated_model, state.optimizer, epoch, metrics,
                           {"budget": state.budget.state_dict(), "plateau": state.plateau.state_dict(),
                            **averaged, **extra})


def record_fed_rows(state: WorkerState, epoch: int, trained: RowTally, drawn: RowTally) -> None:
    """Audit (the loop config's `fed_rows_dir`, from $RESMM_FED_ROWS_DIR): every row's drawn and trained copies in
    this epoch, all workers together, as `epoch-<n>.npz` (n from 1); a resumed epoch's file counts the copies
    trained before the restart too."""
    trained_ids, trained_copies = trained.gathered()
    drawn_ids, drawn_copies = drawn.gathered()
    if state.rank == 0:
        directory = Path(state.loop_config["fed_rows_dir"])
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / f"epoch-{epoch + 1}.npz", trained_ids=trained_ids, trained_copies=trained_copies,
                 drawn_ids=drawn_ids, drawn_copies=drawn_copies, batch_rows=state.cfg.train.worker_batch_rows(),
                 workers=state.world)


def validate(state: WorkerState, val_data) -> tuple[dict, Reading]:
    """Rank 0 scores the whole (unsplit) validation set: exact metrics, no tail rows dropped; and the fused
    head's reading row by row, for the budget."""
    num_classes = len(state.spec.classes)
    streamed = val_data.iter_torch_batches(batch_size=VALIDATION_BATCH_ROWS, device=state.device)
    expand = WorkerTransforms(state.spec).expand
    batches = (expand(batch) for batch in within_deadline(streamed, stall_seconds(state.cfg)))
    outputs = ValidationOutputs.collect(state.evaluated_model, batches)
    predicted = outputs.fused_predictions()
    metrics = classification_metrics(outputs.labels, predicted, num_classes)
    metrics["val_balanced_log_loss"] = balanced_log_loss(outputs.labels, outputs.logits)
    for m in outputs.head_logits:
        head = classification_metrics(*outputs.head_predictions(m), num_classes, prefix=f"val_head_{m}_")
        metrics.update({k: v for k, v in head.items() if not k.endswith("confusion_matrix")})
    return metrics, Reading.of(outputs.row_ids, outputs.labels, outputs.groups, predicted)


def end_epoch(state: WorkerState, epoch: int, metrics: dict) -> None:
    """Agree on the score and the stop decision across ranks, step the schedule, report and checkpoint."""
    if state.rank == 0:
        state.reporter.finish(
            f"[resmm] epoch {state.budget.epoch_label(epoch)} done in {state.epoch_seconds:.1f}s: "
            f"train_loss {metrics['train_loss']:.4f}, val_accuracy {metrics.get('val_accuracy', float('nan')):.4f}, "
            f"val_balanced_accuracy {metrics.get('val_balanced_accuracy', float('nan')):.4f} "
            f"± {metrics.get('val_balanced_accuracy_se', float('nan')):.4f} "
            f"(smoothed {metrics.get('val_smoothed_balanced_accuracy', float('nan')):.4f}), "
            f"{metrics['train_samples_per_s']:.0f} samples/s"
        )
    # Rank 0 alone holds the readings: every rank takes its smoothed score and its decision, so all of them step
    # the schedule alike and stop at the same epoch.
    if state.rank == 0:
        state.stop_reason = state.budget.stop_reason(epoch, time.perf_counter() - state.started)
        own = [metrics.get("val_smoothed_balanced_accuracy", 0.0), float(state.stop_reason is not None)]
    else:
        own = [0.0, 0.0]
    score, stop = _global_sum(own, state.device).tolist()
    if state.rank != 0 and stop:
        state.stop_reason = "stopped with rank 0"
    if state.budget.until_converged:
        state.plateau.step(score)
    checkpoint = write_checkpoint(state, epoch, metrics) if state.rank == 0 else None
    ray.train.report({k: v for k, v in metrics.items() if not isinstance(v, list)}, checkpoint=checkpoint)
    state.last_checkpoint_at, state.steps_since_checkpoint = time.monotonic(), 0
