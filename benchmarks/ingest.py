"""Ingest benchmark: resmm's Ray Data feed against a plain PyTorch DataLoader, Petastorm and Hugging Face
`datasets`, on the same Parquet shards, with the same transforms, on the same cores.

    python benchmarks/ingest.py [--data DIR] [--scales 1 10] [--systems resmm dataloader ...] [--runs 3]
                                [--name latest] [-- key=value ...]

key=value are resmm config overrides for resmm's feed (e.g. data.object_store_budget_mb=512); results of a
run with overrides belong under another --name, so that latest.json keeps the defaults.

Every run is a fresh process (see benchmarks/feeds.py); its throughput counts the rows it delivered over the
seconds it iterated (start-up excluded), and its memory is the peak summed RSS of its whole process tree
(Ray's raylet, workers and object store included), sampled every 100 ms; its summed PSS, which counts a
shared page once, is sampled every 0.5 s. 10x repeats every shard ten times
(symlinks), so the data is real and the ratio isolates how memory grows with the amount read.
Results: benchmarks/results/latest.{json,md} (keys ingest_samples_per_s, peak_rss_mb, ingest).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from results_io import update_latest  # noqa: E402

SYSTEMS = ("resmm", "dataloader", "petastorm", "hf_datasets")
PETASTORM_PYTHON = REPO / ".venv-petastorm" / "bin" / "python"


def scaled_files(data_dir: Path, scale: int, work: Path) -> list[str]:
    files = sorted(str(p) for p in data_dir.glob("*.parquet"))
    if scale == 1:
        return files
    out = work / f"x{scale}"
    out.mkdir(parents=True, exist_ok=True)
    linked = []
    for copy in range(scale):
        for path in files:
            link = out / f"r{copy:02d}-{Path(path).name}"
            if not link.exists():
                link.symlink_to(path)
            linked.append(str(link))
    return linked


def label_counts(files: list[str]) -> tuple[list[str], list[int]]:
    from collections import Counter

    from resmm.sources.contract import class_order

    counts = Counter()
    for path in files:
        counts.update(str(v) for v in pq.read_table(path, columns=["label"]).column("label").to_pylist()
                      if v is not None)
    classes = class_order(counts)
    return classes, [counts[c] for c in classes]


PSS_EVERY_S = 0.5  # PSS reads /proc/PID/smaps_rollup (about 1 ms a process), so it is sampled less often


def tree_memory_bytes(proc: psutil.Process, with_pss: bool) -> tuple[int, int | None]:
    """(summed RSS, summed PSS or None) of a process and all its descendants.

    Summed RSS counts a shared page (Ray's object store, shared libraries) once in every process that maps
    it; PSS splits each shared page between its processes, so its sum is the tree's real footprint.
    """
    rss, pss = 0, 0 if with_pss else None
    for p in [proc, *proc.children(recursive=True)]:
        try:
            if with_pss:
                info = p.memory_full_info()
                rss, pss = rss + info.rss, pss + info.pss
            else:
                rss += p.memory_info().rss
        except psutil.Error:
            pass
    return rss, pss


def run_once(system: str, job_file: Path, timeout_s: float) -> dict | None:
    """One fresh process; None (reported, never silently dropped) when it fails or runs past timeout_s."""
    python = str(PETASTORM_PYTHON) if system == "petastorm" else sys.executable
    # Output goes to files, not pipes: a chatty child would block on a full pipe while we only sample RSS.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([python, str(HERE / "feeds.py"), system, str(job_file)], cwd=REPO,
                                stdout=out, stderr=err, text=True)
        watched, deadline = psutil.Process(proc.pid), time.monotonic() + timeout_s
        peak_rss = peak_pss = 0
        next_pss = time.monotonic()
        while proc.poll() is None and time.monotonic() < deadline:
            with_pss = time.monotonic() >= next_pss
            try:
                rss, pss = tree_memory_bytes(watched, with_pss)
            except psutil.Error:
                rss, pss = 0, None
            peak_rss = max(peak_rss, rss)
            if pss is not None:
                peak_pss, next_pss = max(peak_pss, pss), time.monotonic() + PSS_EVERY_S
            time.sleep(0.1)
        if proc.poll() is None:
            for child in watched.children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
            print(f"[bench] {system} did not finish within {timeout_s:.0f} s; run counted as failed", flush=True)
            return None
        out.seek(0)
        err.seek(0)
        result = next((line for line in out.read().splitlines() if line.startswith("RESULT ")), None)
        if proc.returncode != 0 or result is None:
            print(f"[bench] {system} failed (exit {proc.returncode}): {err.read()[-2000:]}", flush=True)
            return None
    measured = json.loads(result.removeprefix("RESULT "))
    return {"rows": measured["rows"], "seconds": measured["seconds"],
            "samples_per_s": measured["rows"] / measured["seconds"], "peak_rss_mb": peak_rss / 2**20,
            "peak_pss_mb": peak_pss / 2**20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="shard directory (default: the built-in dataset, built if missing)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runs-10x", type=int, default=1, help="runs at scales above 1 (each reads 10x the data)")
    parser.add_argument("--systems-10x", nargs="+", choices=SYSTEMS, default=["resmm", "dataloader"],
                        help="systems measured at scales above 1")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run counts as failed")
    parser.add_argument("--name", default="latest", help="results file stem under benchmarks/results/")
    parser.add_argument("overrides", nargs="*", help="resmm config overrides for resmm's feed")
    args = parser.parse_args(argv)
    if args.overrides and args.name == "latest":
        parser.error("a run with config overrides needs its own --name (latest.json holds the defaults)")
    if "petastorm" in args.systems and not PETASTORM_PYTHON.exists():
        print("resmm: Petastorm needs its own venv (pyarrow 12, numpy<2): run `make bench` once", file=sys.stderr)
        return 2

    from resmm.datasets import demo

    data_dir = Path(args.data) if args.data else demo.default_path()
    if not args.data and not demo.is_built(data_dir):
        demo.build(data_dir)
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="resmm-bench-") as work:
        for scale in args.scales:
            files = scaled_files(data_dir, scale, Path(work))
            classes, counts = label_counts(files)
            job_file = Path(work) / f"job-{scale}.json"
            job_file.write_text(json.dumps({"files": files, "classes": classes, "class_counts": counts,
                                             "overrides": args.overrides}))
            runs = args.runs if scale == 1 else args.runs_10x
            for system in args.systems if scale == 1 else [s for s in args.systems if s in args.systems_10x]:
                measured, failed = [], 0
                for run in range(runs):
                    result = run_once(system, job_file, args.timeout)
                    if result is None:
                        failed += 1
                        continue
                    measured.append(result)
                    print(f"[bench] ingest {system} {scale}x run {run + 1}/{runs}: {result['rows']} rows, "
                          f"{result['samples_per_s']:.1f} samples/s, peak RSS {result['peak_rss_mb']:.0f} MB, "
                          f"peak PSS {result['peak_pss_mb']:.0f} MB",
                          flush=True)
                if failed:
                    notes.append(f"{system} at {scale}x: {failed} of {runs} runs failed or timed out")
                if not measured:
                    continue
                rows.append({
                    "system": system, "scale": scale, "rows": measured[0]["rows"],
                    "samples_per_s": statistics.median(m["samples_per_s"] for m in measured),
                    "runs_samples_per_s": [m["samples_per_s"] for m in measured],
                    "peak_rss_mb": statistics.median(m["peak_rss_mb"] for m in measured),
                    "peak_pss_mb": statistics.median(m["peak_pss_mb"] for m in measured),
                })
    # Systems not measured this time keep their previous rows, so one system can be re-measured alone.
    previous_path = HERE / "results" / f"{args.name}.json"
    previous = json.loads(previous_path.read_text()).get("ingest", {}) if previous_path.exists() else {}
    measured_now = {(r["system"], r["scale"]) for r in rows}
    rows = [r for r in previous.get("rows", []) if (r["system"], r["scale"]) not in measured_now] + rows
    rows.sort(key=lambda r: (r["scale"], SYSTEMS.index(r["system"])))
    for row in rows:
        resmm = next((r for r in rows if r["system"] == "resmm" and r["scale"] == row["scale"]), None)
        row["resmm_ratio"] = resmm["samples_per_s"] / row["samples_per_s"] if resmm else None
    by = {(r["system"], r["scale"]): r for r in rows}
    notes.append("Every feed decodes PNG to 3x32x32, hashes text to 48 token ids and computes a 32-band log-mel "
                 "of 1 s at 8 kHz with resmm's own BatchPreprocessor; resmm's feed also draws balanced "
                 "resampling copies, as data.resample=balanced feeds them.")
    keys = {
        "ingest_samples_per_s": {s: by[(s, 1)]["samples_per_s"] for s in SYSTEMS if (s, 1) in by},
        "peak_rss_mb": {f"{s}_{k}x": by[(s, k)]["peak_rss_mb"] for (s, k) in by},
        "peak_pss_mb": {f"{s}_{k}x": by[(s, k)]["peak_pss_mb"] for (s, k) in by if "peak_pss_mb" in by[(s, k)]},
        "ingest": {"rows": rows, "notes": notes},
    }
    if args.overrides:
        notes.append("resmm's feed ran with config overrides: " + " ".join(args.overrides))
    path = update_latest(keys, args.name)
    print(json.dumps({k: keys[k] for k in ("ingest_samples_per_s", "peak_rss_mb", "peak_pss_mb")}, indent=2))
    print(f"[bench] wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
