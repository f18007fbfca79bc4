"""The feed with one `data` node against two: does adding Ray Data nodes feed a training worker faster?

For each layout, a real cluster of `ray start` nodes on this machine (tests/e2e/cluster.py): a head with no CPUs,
N data nodes and one train node, 1 CPU each. The built-in demo is validated and cached once (the cache lives
under --storage, shared by every layout), then a Ray Train worker on the train node iterates resmm's feed
(resmm.data.feed.fed_batches over the cached split, batches of 64, no model) for --epochs epochs, Ray Data's tasks
pinned to the data nodes by `data.label_selector`, as `jobs/train.py` runs them. Reported per layout, medians over
--runs interleaved runs: epochs 2+ rows/s, and CPU seconds per 1k rows of the data nodes together and of the
train node, sampled from each node's processes.

On this 2-core machine the layouts share the same two cores, so this shows the cost of a second node, not the
scaling a second machine would bring. Writes benchmarks/results/data-nodes.{json,md}.

    .venv/bin/python benchmarks/data_nodes.py [--runs 3] [--epochs 4]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.cluster import ROLE, LabelledCluster  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
BATCH = 64


def feed_only(config: dict) -> list[dict]:
    """A Ray Train worker's loop with the model left out: every epoch of the cached split through resmm's feed."""
    import ray.train
    import torch

    from resmm.data.feed import fed_batches
    from resmm.modalities.transforms import WorkerTransforms

    shard = ray.train.get_dataset_shard("train")
    epochs = []
    for epoch in range(config["epochs"]):
        started, rows = time.time(), 0
        for batch in fed_batches(shard, BATCH, "cpu", None, 1.0, torch.Generator(), shuffle_seed=epoch,
                                 expand=WorkerTransforms(config["spec"]).expand):
            rows += len(batch["label"])
        epochs.append({"epoch": epoch + 1, "start": started, "end": time.time(), "rows": rows})
    return epochs


def run_layout(data_nodes: int, epochs: int, storage: Path, logs: Path) -> dict:
    """One run on a fresh cluster with `data_nodes` data nodes; returns its epochs and CPU seconds per window."""
    import ray
    from ray.train import DataConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.training import prepare_data
    from resmm.config import load_config
    from resmm.train.driver import ingest_options

    cluster = LabelledCluster(logs)
    try:
        cluster.start_head()
        for index in range(data_nodes):
            cluster.add_node("data", cpus=1, name=f"data-{index + 1}")
        cluster.add_node("train", cpus=1)
        os.environ["RAY_ADDRESS"] = f"127.0.0.1:{cluster.gcs_port}"
        cfg = load_config(None, [f"data.label_selector={{{ROLE}: data}}", f"train.storage_path={storage}",
                                 "train.num_workers=1"])
        data = prepare_data(cfg, progress=lambda line: None)
        trainer = TorchTrainer(
            feed_only, train_loop_config={"epochs": epochs, "spec": data.spec},
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1},
                                         label_selector={ROLE: "train"}),
            datasets={"train": data.datasets["train"]},
            dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest_options(cfg)),
        )
        with cluster.cpu_timeline() as timeline:
            records = trainer.fit().return_value
        later = records[1:]
        rows = sum(r["rows"] for r in later)
        cpu = timeline.between(later[0]["start"], later[-1]["end"])
        data_cpu = sum(v for k, v in cpu.items() if k.startswith("data"))
        return {"data_nodes": data_nodes, "epochs": records,
                "epoch2plus_rows_per_s": rows / (later[-1]["end"] - later[0]["start"]),
                "data_cpu_s_per_1k_rows": 1000 * data_cpu / rows,
                "train_cpu_s_per_1k_rows": 1000 * cpu.get("train", 0.0) / rows,
                "head_cpu_s_per_1k_rows": 1000 * cpu.get("head", 0.0) / rows}
    finally:
        ray.shutdown()
        os.environ.pop("RAY_ADDRESS", None)
        cluster.stop()


def markdown(result: dict) -> str:
    lines = ["# The feed with 1 data node against 2", "",
             f"{result['machine']}, {result['runs']} interleaved run(s) per layout, {result['epochs']} epochs each, "
             f"the built-in demo ({result['rows']} training rows) from the feature cache, batches of {BATCH}. "
             "Medians. Every node has 1 CPU and all of them share this machine's cores.", "",
             "| data nodes | epochs 2+ rows/s | data nodes' CPU-s / 1k rows | train node's CPU-s / 1k rows | "
             "head's CPU-s / 1k rows | ÷ 1 data node (rows/s) |", "|---|---|---|---|---|---|"]
    base = result["layouts"][0]["epoch2plus_rows_per_s"]
    for layout in result["layouts"]:
        lines.append(f"| {layout['data_nodes']} | {layout['epoch2plus_rows_per_s']:,.0f} | "
                     f"{layout['data_cpu_s_per_1k_rows']:.3f} | {layout['train_cpu_s_per_1k_rows']:.3f} | "
                     f"{layout['head_cpu_s_per_1k_rows']:.3f} | {layout['epoch2plus_rows_per_s'] / base:.2f}× |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    # A token of this run's own, passed by environment to every node and to this driver (~/.ray stays untouched).
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    work = Path(tempfile.mkdtemp(prefix="resmm-data-nodes-"))
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for run in range(args.runs):
        for data_nodes in (1, 2):  # interleaved, so that drift on the machine hits both layouts alike
            logs = work / f"logs-{data_nodes}-{run}"
            logs.mkdir(parents=True)
            result = run_layout(data_nodes, args.epochs, work / "storage", logs)
            runs[data_nodes].append(result)
            print(f"run {run + 1}, {data_nodes} data node(s): {result['epoch2plus_rows_per_s']:,.0f} rows/s in "
                  f"epochs 2+, data {result['data_cpu_s_per_1k_rows']:.3f} / train "
                  f"{result['train_cpu_s_per_1k_rows']:.3f} CPU-s per 1k rows", flush=True)
    keys = ("epoch2plus_rows_per_s", "data_cpu_s_per_1k_rows", "train_cpu_s_per_1k_rows", "head_cpu_s_per_1k_rows")
    layouts = [{"data_nodes": n, **{k: statistics.median(r[k] for r in results) for k in keys},
                "runs": results} for n, results in runs.items()]
    result = {"machine": f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}", "runs": args.runs,
              "epochs": args.epochs, "rows": runs[1][0]["epochs"][0]["rows"], "layouts": layouts}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data-nodes.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "data-nodes.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
