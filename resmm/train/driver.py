"""The driver side of training: build the TorchTrainer (scaling, storage, checkpoints) and run it."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ray.data import DataContext, ExecutionOptions, ExecutionResources
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from resmm.config import Config
from resmm.modalities.spec import PreprocessSpec
from resmm.train.checkpoint import METRICS_FILE, SELECTION_METRIC
from resmm.train.loop import train_loop_per_worker
from resmm.train.progress import drawn, start_board

# $RESMM_FED_ROWS_DIR: where the workers write every row's drawn and trained copies per epoch (an audit; the
# mid-epoch resume tests read it). Read on the driver, so that it reaches workers on any node.
FED_ROWS_DIR_ENV = "RESMM_FED_ROWS_DIR"
# $RESMM_KEEP_CHECKPOINTS=1: keep every epoch's checkpoint, not the best two, so that a benchmark can score each
# epoch on data no choice saw and replay the selection rules on the same run (benchmarks/selection_rules.py).
KEEP_CHECKPOINTS_ENV = "RESMM_KEEP_CHECKPOINTS"


@dataclass
class FitOutcome:
    best_checkpoint_path: str  # local directory holding state.pt and metrics.json of the best epoch
    best_metrics: dict  # metrics of the best epoch, confusion matrix included
    worker_return: dict  # rank 0's return value: rows seen, train seconds, start epoch


def storage_uri(path: str) -> str:
    """Ray Train needs an absolute path or a URL for its storage."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def ingest_options(cfg: Config):
    """Ray Data options for Train ingest. A label selector or budget must travel here: one set only on the
    driver's DataContext is silently dropped for the workers' dataset shards.

    Built here rather than by `DataConfig.default_ingest_options()`, which copies the deprecated
    `exclude_resources` and so warns on every run."""
    current = DataContext.get_current().execution_options
    options = ExecutionOptions(resource_limits=current.resource_limits, preserve_order=current.preserve_order,
                               verbose_progress=current.verbose_progress)
    return configure_execution(options, cfg)


def configure_execution(options, cfg: Config):
    """Apply `data.label_selector` and `data.object_store_budget_mb` to Ray Data ExecutionOptions. Both are
    set either way, so a process that trains several configs (jobs/compare.py) never inherits the last one's."""
    options.label_selector = dict(cfg.data.label_selector) if cfg.data.label_selector else None
    limits, budget = options.resource_limits, cfg.data.object_store_budget_mb
    options.resource_limits = ExecutionResources.for_limits(
        cpu=limits.cpu, gpu=limits.gpu, memory=limits.memory,
        object_store_memory=budget * 2**20 if budget else None,  # None: no limit of our own (Ray's share)
    )
    return options


def best_checkpoint(kept: list) -> object | None:
    """The kept checkpoint with the highest score, the latest epoch among equal scores: Ray keeps the latest of
    tied checkpoints (and its get_best_checkpoint would return the earliest kept), and the budget's stop reason
    names the latest, so the registered epoch is the one the console names. Mid-epoch checkpoints are never
    candidates: they have no validation score."""
    scored = [(metrics.get(SELECTION_METRIC), metrics.get("epoch", -1), checkpoint) for checkpoint, metrics in kept
              if metrics.get(SELECTION_METRIC) is not None and not metrics.get("within_epoch")]
    return max(scored, key=lambda entry: entry[:2])[2] if scored else None


def fit(
    cfg: Config,
    spec: PreprocessSpec,
    datasets: dict,
    *,
    run_name: str,
    tracking_uri: str,
    run_id: str,
    class_counts: list[int],
    train_rows: int,
    initial_weights: dict | None = None,
) -> FitOutcome:
    board = start_board()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "spec": spec,
            "tracking_uri": tracking_uri,
            "run_id": run_id,
            "class_counts": class_counts,
            "train_rows": train_rows,
            "initial_weights": initial_weights,
            "progress_board": board,
            "fed_rows_dir": os.environ.get(FED_ROWS_DIR_ENV),
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
            label_selector=cfg.train.worker_label_selector,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_uri(cfg.train.storage_path),
            checkpoint_config=CheckpointConfig(
                num_to_keep=None if os.environ.get(KEEP_CHECKPOINTS_ENV) == "1" else 2,
                checkpoint_score_attribute=SELECTION_METRIC, checkpoint_score_order="max"
            ),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
        ),
        datasets=datasets,
        # Only the training set is sharded; rank 0 validates on the whole validation set.
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest_options(cfg)),
    )
    with drawn(board):
        result = trainer.fit()
    best = best_checkpoint(result.best_checkpoints) or result.checkpoint
    if best is None:
        raise RuntimeError("training finished without reporting a checkpoint")
    local_dir = best.to_directory()
    best_metrics = json.loads((Path(local_dir) / METRICS_FILE).read_text())
    return FitOutcome(
        best_checkpoint_path=local_dir,
        best_metrics=best_metrics,
        worker_return=dict(result.return_value or {}),
    )


