"""benchmarks/results/latest.{json,md}: every benchmark merges its own keys in, and the table is redrawn."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def update_latest(keys: dict, name: str = "latest") -> Path:
    """Merge `keys` into NAME.json (other benchmarks' keys stay) and rewrite NAME.md from it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(keys)
    results["machine"] = {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(), "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
    path.write_text(json.dumps(results, indent=2, sort_keys=True))
    path.with_suffix(".md").write_text(markdown(results))
    return path


def _fmt(value, digits=1):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _feed_ratios(rows: list[dict]) -> list[str]:
    """resmm against the two DataLoaders at each scale: epochs 2+ against the one on resmm's cache entries, and
    epoch 1 (with and without Ray Data's start-up) against the one that decodes. Only rows measured on the same
    day are compared: a system left out of a run keeps its older row, and this VM's speed moves between days."""
    lines = []
    for scale in sorted({r["scale"] for r in rows}):
        by = {r["system"]: r for r in rows if r["scale"] == scale}
        resmm = by.get("resmm")
        on_cache, decoding = (_measured_with(resmm, by.get(system)) for system in ("dataloader_on_cache", "dataloader"))
        if resmm and on_cache:
            lines.append(f"- {scale}x, epochs 2+: resmm ÷ DataLoader on the same cache entries = "
                         f"**{resmm['epoch2plus_samples_per_s'] / on_cache['epoch2plus_samples_per_s']:.2f}x**")
        if resmm and decoding:
            line = (f"- {scale}x, epoch 1: resmm ÷ re-decoding DataLoader = "
                    f"**{resmm['epoch1_samples_per_s'] / decoding['epoch1_samples_per_s']:.2f}x**")
            if resmm.get("epoch1_with_startup_samples_per_s"):  # rows measured before the start-up was timed lack it
                line += (f", or {resmm['epoch1_with_startup_samples_per_s'] / decoding['epoch1_samples_per_s']:.2f}x "
                         f"with Ray Data's start-up ({resmm['startup_s']:.1f} s) counted in")
            lines.append(line)
    return [""] + lines if lines else []


def _measured_with(resmm: dict | None, row: dict | None) -> dict | None:
    """`row` where it was measured on the day `resmm` was (rows from before the dates were kept: never)."""
    if resmm is None or row is None or resmm.get("measured") is None or row.get("measured") != resmm["measured"]:
        return None
    return row


def markdown(results: dict) -> str:
    lines = [f"# resmm benchmarks ({results['machine']['cpus']} CPUs, {results['machine']['updated']})", ""]
    ingest = results.get("ingest")
    if ingest:
        lines += ["## Ingest: the same shards, transforms, batches, dtypes and resampling; medians of interleaved runs",
                  "", "| system | scale | epochs | Ray Data start-up s | epoch 1 rows/s | epoch 1 with start-up | "
                  "epochs 2+ rows/s | runs (epochs 2+) | "
                  "CPU-s / 1k rows, epoch 1 | CPU-s / 1k rows, epochs 2+ | peak RSS MB | peak PSS MB | "
                  "peak anon RSS MB | resmm epochs 2+ ÷ this | sampler's CPU, cores | measured |", "|---" * 16 + "|"]
        for row in ingest["rows"]:
            resmm = next((r for r in ingest["rows"] if r["system"] == "resmm" and r["scale"] == row["scale"]), None)
            ratio = resmm["epoch2plus_samples_per_s"] / row["epoch2plus_samples_per_s"] if resmm else None
            lines.append(f"| {row['system']} | {row['scale']}x | {row['epochs']} | {_fmt(row.get('startup_s'), 2)} | "
                         f"{_fmt(row['epoch1_samples_per_s'])} | "
                         f"{_fmt(row.get('epoch1_with_startup_samples_per_s'))} | "
                         f"{_fmt(row['epoch2plus_samples_per_s'])} | "
                         f"{', '.join(_fmt(r) for r in row['runs_epoch2plus_samples_per_s'])} | "
                         f"{_fmt(row['epoch1_cpu_s_per_1000'], 2)} | {_fmt(row['epoch2plus_cpu_s_per_1000'], 2)} | "
                         f"{_fmt(row['peak_rss_mb'], 0)} | {_fmt(row['peak_pss_mb'], 0)} | "
                         f"{_fmt(row['peak_anon_rss_mb'], 0)} | {_fmt(ratio, 2)}x | "
                         f"{_fmt(row.get('sampler_cpu_share'), 3)} | {row.get('measured', 'before 2026-12-07')} |")
        lines += _feed_ratios(ingest["rows"])
        lines += [""] + [f"- {note}" for note in ingest.get("notes", [])] + [""]
    train = results.get("train")
    if train:
        lines += ["## Training throughput: the same model and loop, fed two ways", "",
                  "| feed | samples/s (median) | runs | data-stall fraction | of which epoch start-up | step ms | "
                  "step thread CPU ms |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in train["rows"].items():
            lines.append(f"| {name} | {_fmt(row['samples_per_s'])} | "
                         f"{', '.join(_fmt(r) for r in row['runs_samples_per_s'])} | {_fmt(row['stall_fraction'], 3)} | "
                         f"{_fmt(row.get('startup_stall_fraction'), 3)} | {_fmt(row.get('step_ms'), 0)} | "
                         f"{_fmt(row.get('step_cpu_ms'), 0)} |")
        paired = train.get("runs_streaming_over_in_memory")
        lines += ["", f"Streaming / in-memory: **{_fmt(train['streaming_over_in_memory'], 3)}x**"
                  + (f" (median of each run's own ratio: {', '.join(_fmt(r, 3) for r in paired)})" if paired else ""),
                  ""]
        lines += [f"- {note}" for note in train.get("notes", [])] + [""]
    return "\n".join(lines)
