"""Replay the stop-and-checkpoint rules on one real run, epoch by epoch, and score each rule's choice on rows no
choice saw.

    RESMM_KEEP_CHECKPOINTS=1 python jobs/train.py data.path=<train> --summary-json run.json ...
    python benchmarks/selection_rules.py --summary run.json --storage <train.storage_path> --train-data <train> \
        --holdout <holdout> [--out benchmarks/results/selection-rules-<name>.json]

Every epoch's checkpoint (kept by RESMM_KEEP_CHECKPOINTS=1) is loaded into the registered network and scored on
the run's own validation split (rebuilt from `--train-data` by the same group hash) and on the holdout. Then
each rule picks an epoch from the validation readings alone, as it would have during training:
- `plain patience`: the rule resmm used before issue 41 (raw readings, patience 4, min_delta 0.002, the best raw
  reading registered);
- `noise-aware`: today's default (resmm/train/budget.py: gains above the bootstrap noise of a reading or of the
  smoothed curve, a floor of train.min_steps, the latest checkpoint within the noise of the best reading);
- `noise-aware stop, best reading`: the same stop, the best single reading registered;
- `last epoch`: no selection, the last epoch the run trained;
- `oracle`: the best epoch on the holdout (a bound, not a rule).
The rules only see epochs the run trained, so a rule that would have trained longer is marked `truncated`.
Holdout scores are the fused head's balanced accuracy with a bootstrap standard error over the holdout's groups.
Prints two tables (per epoch, per rule); writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.holdout_eval import load_served, model_outputs  # noqa: E402
from resmm.config import load_config  # noqa: E402
from resmm.data.split import buckets_of, in_validation, split_keys  # noqa: E402
from resmm.train.budget import Budget, Reading, plain_patience_rule  # noqa: E402
from resmm.train.checkpoint import METRICS_FILE, STATE_FILE  # noqa: E402
from resmm.train.noise import balanced_hits, standard_error  # noqa: E402


def labelled_rows(path: str, group_column: str, val_fraction: float | None):
    """(frame, labels, groups) of the labelled rows of `path`; only its validation side when `val_fraction`."""
    table = pq.read_table(path)
    table = table.filter(table.column("label").is_valid())
    buckets = buckets_of(split_keys(table, group_column))
    if val_fraction is not None:
        keep = in_validation(buckets, val_fraction)
        table, buckets = table.filter(keep), buckets[keep]
    return table.to_pandas(), [str(v) for v in table.column("label").to_pylist()], buckets


def epoch_checkpoints(storage: Path, run_name: str) -> dict[int, Path]:
    """{epoch: checkpoint directory} of the run's end-of-epoch checkpoints."""
    found = {}
    for directory in sorted(d for d in (storage / run_name).glob("checkpoint_*") if d.is_dir()):
        metrics = json.loads((directory / METRICS_FILE).read_text())
        if not metrics.get("within_epoch"):
            found[int(metrics["epoch"])] = directory
    return found


def hits_of(served, frame, labels) -> tuple[np.ndarray, np.ndarray]:
    """(label index per row, the fused head's hit per row)."""
    outputs = model_outputs(served, frame, labels)
    return outputs.labels, (outputs.fused_predictions() == outputs.labels).astype(np.float64)


def _best(per_epoch: list[dict]) -> int:
    """Index of the best raw reading, the latest of equal ones."""
    scores = [row["val"] for row in per_epoch]
    return max(range(len(scores)), key=lambda i: (scores[i], i))


def _last_gain(per_epoch: list[dict], min_delta: float = 0.002) -> int:
    """The plain rule's last gain epoch (index), to tell a stop at the last epoch from running out of epochs."""
    gain, gain_epoch = -np.inf, -1
    for index, row in enumerate(per_epoch):
        if row["val"] > gain + (min_delta if gain_epoch >= 0 else 0.0):
            gain, gain_epoch = row["val"], index
    return gain_epoch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--storage", type=Path, required=True, help="the run's train.storage_path")
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--holdout", required=True)
    parser.add_argument("--group-column", default="group_id")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    summary = json.loads(args.summary.read_text())
    cfg = load_config(None, [])
    served = load_served(f"models:/{summary['registered_model']}/{summary['model_version']}")
    checkpoints = epoch_checkpoints(args.storage, summary["ray_train_run_name"])
    val_frame, val_labels, val_groups = labelled_rows(args.train_data, args.group_column, cfg.data.val_fraction)
    hold_frame, hold_labels, hold_groups = labelled_rows(args.holdout, args.group_column, None)
    epochs = sorted(checkpoints)
    per_epoch, readings = [], []
    for epoch in epochs:
        state = torch.load(checkpoints[epoch] / STATE_FILE, map_location="cpu", weights_only=True)
        served.network.load_state_dict(state["model"])
        labels, hits = hits_of(served, val_frame, val_labels)
        readings.append(Reading(np.arange(len(labels), dtype=np.int64), labels, val_groups.astype(np.int64), hits))
        hold_y, hold_hits = hits_of(served, hold_frame, hold_labels)
        per_epoch.append({"epoch": epoch + 1, "val": balanced_hits(labels, hits),
                          "val_se": standard_error(labels, hits, val_groups, seed=epoch),
                          "holdout": balanced_hits(hold_y, hold_hits),
                          "holdout_se": standard_error(hold_y, hold_hits, hold_groups, seed=epoch)})
        print(f"epoch {epoch + 1}: val {per_epoch[-1]['val']:.3f} ± {per_epoch[-1]['val_se']:.3f}, "
              f"holdout {per_epoch[-1]['holdout']:.3f} ± {per_epoch[-1]['holdout_se']:.3f}", flush=True)
    steps_per_epoch = summary["data_profile"]["rows"] // cfg.train.batch_size
    budget = Budget.from_config(cfg.train, steps_per_epoch)
    noise_stop = None
    for index, reading in enumerate(readings):
        budget.observe(index, reading)
        if budget.stop_reason(index, 0.0):
            noise_stop = index + 1
            break
    plain_stop, plain_best = plain_patience_rule([row["val"] for row in per_epoch])
    plain_stopped = plain_stop < len(epochs) or plain_stop - 1 - _last_gain(per_epoch) >= 4
    trained = noise_stop or len(epochs)
    rules = {  # name: (epochs run, registered epoch index, truncated: it would have trained on)
        "plain patience": (plain_stop, plain_best, not plain_stopped),
        "noise-aware": (trained, budget.best_epoch, noise_stop is None),
        "noise-aware stop, best reading": (trained, _best(per_epoch[:trained]), noise_stop is None),
        "last epoch": (len(epochs), len(epochs) - 1, False),
        "oracle": (len(epochs), int(np.argmax([row["holdout"] for row in per_epoch])), False),
    }
    table = {name: {"stopped_after": epochs[stop - 1] + 1, "registered_epoch": epochs[best] + 1, "truncated": truncated,
                    "holdout": per_epoch[best]["holdout"], "holdout_se": per_epoch[best]["holdout_se"]}
             for name, (stop, best, truncated) in rules.items()}
    print("\n| rule | stopped after | registered epoch | holdout balanced acc (fused) ± SE |\n|---|---|---|---|")
    for name, row in table.items():
        print(f"| {name} | {row['stopped_after']}{' (truncated)' if row['truncated'] else ''} | "
              f"{row['registered_epoch']} | {row['holdout']:.3f} ± {row['holdout_se']:.3f} |")
    if args.out:
        np.savez(args.out.with_suffix(".npz"), hits=np.stack([r.hits for r in readings]), labels=readings[0].labels,
                 groups=readings[0].groups, epochs=np.array(epochs))
        args.out.write_text(json.dumps({"summary": str(args.summary), "per_epoch": per_epoch, "rules": table},
                                       indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
