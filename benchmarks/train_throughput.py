"""Training throughput: the same model, objective and optimiser step, fed by streaming Ray Data or by tensors
already in memory. The gap between the two is what the data pipeline costs the accelerator.

    python benchmarks/train_throughput.py [--data DIR] [--shards 3] [--epochs 4] [--runs 5] [--gpu] [key=value ...]

One training process (a Ray Train worker's loop without DDP); torch gets one intra-op thread on CPU, as a
worker does, so Ray Data's decode has the rest. The data-stall fraction is the share of epoch time the step
loop spent waiting for its next batch. The two feeds train their own models side by side, taking turns of a
few steps, so that both see the same machine. Results: benchmarks/results/latest.{json,md} (train_samples_per_s).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from results_io import update_latest  # noqa: E402

BATCH = 64


def in_memory_batches(tensors: dict, device, generator: torch.Generator):
    order = torch.randperm(len(tensors["label"]), generator=generator)
    for start in range(0, len(order) - BATCH + 1, BATCH):
        index = order[start: start + BATCH]
        yield {k: v[index].to(device, non_blocking=True) for k, v in tensors.items()}


# Steps a feed takes before the other feed's turn. The speed of this VM drifts by 10-15% within a minute, so
# feeds that took turns by the epoch (20 s each on 2 CPUs) saw different machines: their paired ratio spread
# 0.94-1.02 over five runs. A turn of a few steps (1-2 s on CPU) is long enough for the stream's refill, which a
# streaming step's consumption sets off (a 512-row pull is read in about 0.1 s), to fall in the streaming turn.
TURN_STEPS = 4


def timed_turn(batches, step, clock: dict, steps: int, epoch_start: bool) -> bool:
    """Up to `steps` steps over the iterator `batches`, timed into `clock` (rows, seconds, seconds waiting for
    data, of which waiting for an epoch's first batch, seconds in steps, the step thread's CPU seconds in steps);
    False once `batches` is exhausted. A step whose wall time exceeds its thread's CPU time waited for a core or
    the GIL."""
    started = time.perf_counter()
    try:
        for taken in range(steps):
            before = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return False
            waited = time.perf_counter() - before
            clock["waiting"] += waited
            clock["first_waits"] += waited if taken == 0 and epoch_start else 0.0
            wall, cpu = time.perf_counter(), time.thread_time()
            step(batch)
            clock["stepping"] += time.perf_counter() - wall
            clock["step_cpu"] += time.thread_time() - cpu
            clock["rows"] += len(batch["label"])
        return True
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # a turn's queued GPU work is charged to its own feed
        clock["seconds"] += time.perf_counter() - started


def interleaved_epoch(iterators: dict, steps: dict, clocks: dict, order: list[str]) -> None:
    """One epoch of every feed, the feeds taking turns of TURN_STEPS steps (the one that went first goes second
    in the next round), until every feed's epoch is over."""
    live, started = list(order), set()
    while live:
        for feed in list(live):
            if not timed_turn(iterators[feed], steps[feed], clocks[feed], TURN_STEPS, feed not in started):
                live.remove(feed)
            started.add(feed)
        live.reverse()


def decoded_in_memory(files: list, spec, pin: bool) -> dict:
    """In memory: every row decoded once, before the clock starts."""
    from resmm.modalities.spec import BatchPreprocessor

    preprocess = BatchPreprocessor(spec)
    parts = [preprocess({c: t.column(c) for c in t.column_names}) for t in
             (pq.read_table(f, columns=["sample_id", "label", "image", "text", "audio"]) for f in files)]
    tensors = {k: torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in parts[0]}
    return {k: v.pin_memory() for k, v in tensors.items()} if pin else tensors


def medians(runs: list[dict]) -> dict:
    return {"samples_per_s": statistics.median(r["samples_per_s"] for r in runs),
            "runs_samples_per_s": [r["samples_per_s"] for r in runs],
            "stall_fraction": statistics.median(r["stall_fraction"] for r in runs),
            "startup_stall_fraction": statistics.median(r["startup_stall_fraction"] for r in runs),
            "step_ms": statistics.median(r["step_ms"] for r in runs),
            "step_cpu_ms": statistics.median(r["step_cpu_ms"] for r in runs)}


def training_step(cfg, spec, device, counts: list[int], amp: bool):
    """A fresh model, AdamW and loss, as a worker builds them; returns one optimizer step over a batch."""
    from resmm.modalities.network import build_model
    from resmm.train.loop import Precision, train_step
    from resmm.train.losses import LongTailLoss
    from resmm.train.objectives import total_loss

    model = build_model(cfg.model, spec, cfg.data.impute).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    precision = Precision.for_device(device, amp=amp)
    scaler = precision.grad_scaler()
    loss_fn = LongTailLoss("ce", counts).to(device)

    def objective(output, batch):
        return total_loss(output, batch, loss_fn, cfg.train.aux_loss_weight, cfg.train.retrieval_loss_weight)

    def step(batch):
        train_step(model, batch, optimizer, scaler, precision, objective)

    return step


def cached_stream(data_dir: Path, files: list, spec, cache_dir: str, held_cpus: int):
    """The defaults' feed (data.cache=on) over `files`: the validation pass fills the cache once, before any clock
    starts (as the in-memory feed decodes before its clock); every streaming epoch then reads the entries."""
    import ray
    from ray.data import ExecutionResources

    from pipelines.feature_cache import CacheTarget, read_cached_split
    from pipelines.ingest import scan_source
    from pipelines.validation import Rules, validate_source

    # The training process holds a CPU, as a Ray Train worker does; Ray Train excludes its workers' CPUs from
    # Ray Data's limits, so this caps Ray Data one CPU below the cluster's (without it, Ray Data's tasks
    # oversubscribe the step's core). A CPU limit, not the deprecated `exclude_resources`.
    context = ray.data.DataContext.get_current()
    context.execution_options.resource_limits = ExecutionResources.for_limits(
        cpu=ray.cluster_resources()["CPU"] - held_cpus)
    source = scan_source(str(data_dir), list(spec.modalities))
    source = type(source)(url=source.url, filesystem=source.filesystem,
                          shards=tuple(s for s in source.shards if Path(s.path).name in {f.name for f in files}))
    filled = validate_source(source, spec, Rules(True, False, None, None), progress=lambda _: None,
                             cache=CacheTarget.at(cache_dir))
    train_rows = read_cached_split(list(filled.entries), cache_dir, spec, validation=None, val_fraction=0.1)
    # What Ray Train hands a worker (resmm.train.driver: DataConfig(datasets_to_split=["train"])): one split of a
    # streaming split, whose executor runs in Ray Data's coordinator actor, not in the training process.
    return train_rows.streaming_split(1, equal=True)[0]


def measure(args, cfg, spec, device, counts: list[int], streamed, tensors: dict) -> dict[str, list]:
    """Each run trains a fresh model per feed, the two feeds taking turns of a few steps within every epoch
    (interleaved_epoch), so that a drift in the machine's speed falls on both alike; one record per run and feed,
    and the run's paired ratio."""
    from resmm.data.feed import EpochPulls, batches_of
    from resmm.modalities.transforms import WorkerTransforms

    feeds = ("in_memory", "streaming")
    results: dict[str, list] = {"streaming": [], "in_memory": [], "paired_ratio": []}
    for run in range(args.runs):
        # Exactly what a Ray Train worker iterates (resmm.train.loop): the first epoch's stream starts before the
        # models are built, and each later one once the one before it is pulled, as in training.
        pulls = EpochPulls(streamed, {epoch: epoch for epoch in range(args.epochs)}, BATCH, device,
                           cfg.data.prefetch_batches)
        steps = {}
        for feed in feeds:
            torch.manual_seed(run)
            steps[feed] = training_step(cfg, spec, device, counts, amp=args.gpu)
        clocks = {feed: dict.fromkeys(("rows", "seconds", "waiting", "first_waits", "stepping", "step_cpu"), 0.0)
                  for feed in feeds}
        for epoch in range(args.epochs):
            streamed_batches = batches_of(pulls.chunks(epoch), BATCH, None, 1.0, torch.Generator().manual_seed(epoch),
                                          expand=WorkerTransforms(spec).expand)
            iterators = {
                "streaming": iter(streamed_batches),
                "in_memory": in_memory_batches(tensors, device, torch.Generator().manual_seed(epoch))}
            interleaved_epoch(iterators, steps, clocks, list(feeds if epoch % 2 == 0 else feeds[::-1]))
        pulls.close()
        for feed in feeds:
            record = run_record(clocks[feed])
            results[feed].append(record)
            print(f"[bench] train {feed} run {run + 1}/{args.runs}: {record['samples_per_s']:.1f} samples/s, "
                  f"data stall {record['stall_fraction']:.3f}, of which waiting for each epoch's first batch "
                  f"{record['startup_stall_fraction']:.3f}; step {record['step_ms']:.0f} ms, its thread's CPU "
                  f"{record['step_cpu_ms']:.0f} ms ({record['rows']} rows, {record['seconds']:.1f} s)", flush=True)
        results["paired_ratio"].append(results["streaming"][-1]["samples_per_s"]
                                       / results["in_memory"][-1]["samples_per_s"])
    return results


def run_record(clock: dict) -> dict:
    """One feed's figures over a run, from its clock (timed_turn); step times are per BATCH rows."""
    steps_taken = clock["rows"] / BATCH
    return {"samples_per_s": clock["rows"] / clock["seconds"], "stall_fraction": clock["waiting"] / clock["seconds"],
            "startup_stall_fraction": clock["first_waits"] / clock["seconds"],
            "step_ms": 1000 * clock["stepping"] / steps_taken, "step_cpu_ms": 1000 * clock["step_cpu"] / steps_taken,
            "rows": int(clock["rows"]), "seconds": clock["seconds"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="shard directory (default: the built-in dataset)")
    parser.add_argument("--shards", type=int, default=3, help="how many shards to train on")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="train on CUDA with AMP (bf16 where supported)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.prefetch_batches=1")
    parser.add_argument("--no-write", action="store_true", help="print only; leave latest.json alone")
    args = parser.parse_args(argv)

    from feeds import default_spec
    from resmm.sources.contract import class_order
    from pipelines.runtime import connect_ray
    from resmm.config import load_config
    from resmm.datasets import demo

    data_dir = Path(args.data) if args.data else demo.default_path()
    if not args.data and not demo.is_built(data_dir):
        demo.build(data_dir)
    files = sorted(data_dir.glob("*.parquet"))[: args.shards]
    labels = [str(v) for f in files for v in pq.read_table(f, columns=["label"]).column("label").to_pylist()
              if v is not None]
    classes = class_order(set(labels))
    spec = default_spec(classes)
    cfg = load_config(None, args.overrides)
    device = torch.device("cuda" if args.gpu else "cpu")
    if not args.gpu:
        torch.set_num_threads(1)

    tensors = decoded_in_memory(files, spec, pin=args.gpu)

    connect_ray()
    cache_dir = tempfile.mkdtemp(prefix="resmm-train-bench-")
    streamed = cached_stream(data_dir, files, spec, cache_dir, held_cpus=0 if args.gpu else 1)

    counts = [labels.count(c) for c in classes]
    results = measure(args, cfg, spec, device, counts, streamed, tensors)
    paired = results.pop("paired_ratio")
    summary = {feed: medians(runs) for feed, runs in results.items()}
    shutil.rmtree(cache_dir, ignore_errors=True)
    ratio = statistics.median(paired)  # the median of each run's own ratio: both feeds saw the same machine
    device_name = torch.cuda.get_device_name(0) if args.gpu else "CPU, 1 torch thread"
    keys = {
        "train_samples_per_s": {feed: summary[feed]["samples_per_s"] for feed in summary},
        "train": {"rows": summary, "streaming_over_in_memory": ratio, "runs_streaming_over_in_memory": paired,
                  "device": device_name,
                  "notes": [f"{len(files)} demo shards ({len(labels)} labelled rows), {args.epochs} epochs per run "
                            f"(the two feeds training side by side, taking turns of {TURN_STEPS} steps), batch {BATCH}, "
                            f"{device_name}, "
                            f"data.prefetch_batches={cfg.data.prefetch_batches}; streaming reads the decoded-feature "
                            "cache (filled before the clock, as the in-memory feed decodes before it); the first "
                            "epoch's stream starts before the models are built and each later one once the one "
                            "before it is pulled, as in training "
                            "(resmm.data.feed.EpochPulls); startup_stall_fraction: the wait for each epoch's first "
                            "batch; step_ms and step_cpu_ms: a step's wall time and its thread's CPU time."]},
    }
    print(json.dumps({"train_samples_per_s": keys["train_samples_per_s"], "streaming_over_in_memory": ratio,
                      "stall_fraction": {f: summary[f]["stall_fraction"] for f in summary}}, indent=2))
    if not args.no_write:
        path = update_latest(keys)
        print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
