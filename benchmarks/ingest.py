"""Ingest benchmark: resmm's feed (Ray Data, decoded-feature cache) against a plain PyTorch DataLoader that
re-decodes every epoch, the same DataLoader reading resmm's cache, Hugging Face `datasets` with its own map cache,
and Petastorm: the same Parquet shards, transforms, batch size (64), output dtypes and resampling work.

    python benchmarks/ingest.py [--data DIR] [--scales 1 10] [--systems resmm dataloader ...] [--runs 3]
                                [--epochs 5] [--name latest] [-- key=value ...]

key=value are resmm config overrides for resmm's feed (e.g. data.object_store_budget_mb=512); results of a
run with overrides belong under another --name, so that latest.json keeps the defaults.

Every run is a fresh process with cold caches (a new cache directory for resmm and HF), iterating `--epochs`
epochs; runs are interleaved (run 1 of every system, then run 2, ...) and medians are reported. Epoch 1 (which
fills the caches) and epochs 2+ are reported apart. CPU-seconds per 1,000 rows sum user+system time over the whole
process tree (Ray's raylet and workers, DataLoader workers), sampled every 100 ms and matched with each epoch's
start and end. Memory: peak summed RSS of the tree, and, sampled every 0.5 s, its summed PSS (a shared page
counted once) and summed anonymous RSS (heap and object-store pages the processes own, without file mappings
such as the page cache of mapped entries). 10x repeats every shard ten times (symlinks), so the data is real
and the ratio isolates how memory grows with the amount read.
Results: benchmarks/results/latest.{json,md} (keys ingest_samples_per_s, peak_rss_mb, ingest).
"""
from __future__ import annotations

import argparse
import json
import os
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

SYSTEMS = ("resmm", "resmm_cache_off", "dataloader", "dataloader_on_cache", "hf_datasets", "petastorm")
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


# The sampler shares the 2 CPUs with the feed it measures, and Ray's tree has 20-odd processes to a DataLoader's 3.
# psutil's full memory info (smaps_rollup, which walks every mapping: 80 ms for Ray's tree) every 0.5 s and a
# psutil pass over the tree every 0.1 s took 0.2 of a core from resmm's feeds, several times what they took from
# the DataLoaders. Now: /proc/PID/stat and /status (CPU, RSS and anonymous RSS: 2 ms for Ray's tree) every
# sample, the tree's members (7 ms) every PROCESSES_EVERY_S, PSS every PSS_EVERY_S: about 0.05 of a core for
# Ray's tree. The sampler's own CPU is reported beside each row (sampler_cpu_share).
PSS_EVERY_S = 5.0
PROCESSES_EVERY_S = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_sample(pid: int) -> tuple[float, int, int] | None:
    """(CPU-seconds, RSS bytes, anonymous RSS bytes) of a process, from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/status") as status:
            fields, lines = stat.read().rsplit(")", 1)[1].split(), status.read().splitlines()
    except OSError:
        return None
    memory = dict(line.split(":", 1) for line in lines if line.startswith(("VmRSS:", "RssAnon:")))
    kib = {k: int(v.split()[0]) * 1024 for k, v in memory.items()}
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, kib.get("VmRSS", 0), kib.get("RssAnon", 0)


def process_pss(process) -> int:
    """PSS of a process, bytes (0 when it is gone)."""
    try:
        return process.memory_full_info().pss
    except psutil.Error:
        return 0


class TreeSampler:
    """Samples a process tree: peak summed RSS, PSS and anonymous RSS, and cumulative CPU-seconds over time."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.processes: list = []
        self.cpu_by_pid: dict[int, float] = {}
        self.cpu_series: list[tuple[float, float]] = []  # (time.time(), CPU-seconds of the tree so far)
        self.peak_rss = self.peak_pss = self.peak_anon = 0
        self.next_pss = self.next_processes = time.monotonic()
        self.own_cpu_s, self.started = 0.0, time.monotonic()

    def sample(self) -> None:
        own, now = time.process_time(), time.monotonic()
        if now >= self.next_processes:
            try:
                self.processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            self.next_processes = now + PROCESSES_EVERY_S
        rss = anon = 0
        for p in self.processes:
            sampled = process_sample(p.pid)
            if sampled is not None:
                self.cpu_by_pid[p.pid] = sampled[0]  # not children's: a reaped child is counted already
                rss, anon = rss + sampled[1], anon + sampled[2]
        self.cpu_series.append((time.time(), sum(self.cpu_by_pid.values())))
        self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
        if now >= self.next_pss:
            self.peak_pss = max(self.peak_pss, sum(process_pss(p) for p in self.processes))
            self.next_pss = now + PSS_EVERY_S
        self.own_cpu_s += time.process_time() - own

    def own_cpu_share(self) -> float:
        """The sampler's CPU-seconds per second of the run (a share of one core)."""
        return self.own_cpu_s / max(1e-9, time.monotonic() - self.started)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU-seconds the tree spent between two wall-clock times (nearest samples)."""
        def at(moment):
            return min(self.cpu_series, key=lambda s: abs(s[0] - moment))[1]

        return max(0.0, at(end) - at(start))


def run_child(python: str, args: list[str], timeout_s: float, sampler_wanted: bool = True):
    """Run `feeds.py ARGS` in a fresh process; (its RESULT json, the sampler), or (None, sampler) on failure."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([python, str(HERE / "feeds.py"), *args], cwd=REPO, stdout=out, stderr=err, text=True)
        sampler, deadline = TreeSampler(proc.pid), time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if sampler_wanted:
                sampler.sample()
            time.sleep(0.1)
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
            print(f"[bench] {args[0]} did not finish within {timeout_s:.0f} s; run counted as failed", flush=True)
            return None, sampler
        out.seek(0)
        err.seek(0)
        result = next((line for line in out.read().splitlines() if line.startswith("RESULT ")), None)
        if proc.returncode != 0 or result is None:
            print(f"[bench] {args[0]} failed (exit {proc.returncode}): {err.read()[-2000:]}", flush=True)
            return None, sampler
    return json.loads(result.removeprefix("RESULT ")), sampler


def run_once(system: str, job_file: Path, timeout_s: float) -> dict | None:
    """One fresh process; None (reported, never silently dropped) when it fails or runs past timeout_s."""
    python = str(PETASTORM_PYTHON) if system == "petastorm" else sys.executable
    result, sampler = run_child(python, [system, str(job_file)], timeout_s)
    if result is None:
        return None
    epochs = result["epochs"]
    later = epochs[1:] or epochs

    def rate(records, extra_s=0.0):
        return sum(r["rows"] for r in records) / (extra_s + sum(r["end"] - r["start"] for r in records))

    def cpu_per_1000(records):
        cpu = sum(sampler.cpu_between(r["start"], r["end"]) for r in records)
        return 1000 * cpu / max(1, sum(r["rows"] for r in records))

    return {"rows": epochs[0]["rows"], "epochs": len(epochs),
            "epoch1_samples_per_s": rate(epochs[:1]), "epoch2plus_samples_per_s": rate(later),
            # resmm times Ray Data's first job apart (feeds.ray_data_startup); epoch 1 with it counted in
            "startup_s": epochs[0].get("startup_s", 0.0),
            "epoch1_with_startup_samples_per_s": rate(epochs[:1], epochs[0].get("startup_s", 0.0)),
            "epoch1_cpu_s_per_1000": cpu_per_1000(epochs[:1]), "epoch2plus_cpu_s_per_1000": cpu_per_1000(later),
            "peak_rss_mb": sampler.peak_rss / 2**20, "peak_pss_mb": sampler.peak_pss / 2**20,
            "peak_anon_rss_mb": sampler.peak_anon / 2**20, "sampler_cpu_share": sampler.own_cpu_share()}


MEASURES = ("epoch1_samples_per_s", "epoch1_with_startup_samples_per_s", "startup_s", "epoch2plus_samples_per_s", "epoch1_cpu_s_per_1000", "epoch2plus_cpu_s_per_1000",
            "peak_rss_mb", "peak_pss_mb", "peak_anon_rss_mb", "sampler_cpu_share")


def measure_scale(args, data_dir: Path, scale: int, work: Path) -> tuple[list[dict], list[str]]:
    """Every system at one scale, runs interleaved; one row per system with the medians."""
    files = scaled_files(data_dir, scale, work)
    classes, counts = label_counts(files)
    systems = args.systems if scale == 1 else [s for s in args.systems if s in args.systems_10x]
    runs = args.runs if scale == 1 else args.runs_10x
    epochs = args.epochs if scale == 1 else args.epochs_10x
    job = {"files": files, "classes": classes, "class_counts": counts, "overrides": args.overrides,
           "epochs": epochs, "cache": str(work / f"shared-cache-{scale}")}
    if "dataloader_on_cache" in systems:  # the cache it reads, filled once, before any clock starts
        filled, _ = run_child(sys.executable, ["fill", str(write_job(work, "fill", scale, job))], args.timeout, False)
        job["entries"] = filled["entries"]
    measured = {s: [] for s in systems}
    notes = []
    for run in range(runs):
        for system in systems:
            job_file = write_job(work, f"{system}-{run}", scale, {**job, "cache": str(work / f"cache-{system}-{run}-{scale}")}
                                 if system in ("resmm", "hf_datasets") else job)
            result = run_once(system, job_file, args.timeout)
            if result is None:
                notes.append(f"{system} at {scale}x: run {run + 1} failed or timed out")
                continue
            measured[system].append(result)
            print(f"[bench] ingest {system} {scale}x run {run + 1}/{runs}: {result['rows']} rows x {epochs} epochs, "
                  f"epoch 1 {result['epoch1_samples_per_s']:.0f} rows/s, epochs 2+ "
                  f"{result['epoch2plus_samples_per_s']:.0f} rows/s ({result['epoch2plus_cpu_s_per_1000']:.2f} "
                  f"CPU-s/1k rows), peak RSS {result['peak_rss_mb']:.0f} MB, PSS {result['peak_pss_mb']:.0f} MB, "
                  f"anon {result['peak_anon_rss_mb']:.0f} MB", flush=True)
    rows = []
    for system, results in measured.items():
        if results:
            rows.append({"system": system, "scale": scale, "rows": results[0]["rows"], "epochs": epochs,
                         "runs": len(results), **{m: statistics.median(r[m] for r in results) for m in MEASURES},
                         "runs_epoch2plus_samples_per_s": [r["epoch2plus_samples_per_s"] for r in results],
                         "runs_epoch1_samples_per_s": [r["epoch1_samples_per_s"] for r in results],
                         "measured": time.strftime("%Y-%m-%d")})
    return rows, notes


def write_job(work: Path, name: str, scale: int, job: dict) -> Path:
    path = work / f"job-{name}-{scale}.json"
    path.write_text(json.dumps(job))
    return path


GPU_STEP_ROWS_PER_S = (10_000, 30_000, 100_000)  # what one accelerator steps these small encoders at, a range


def write_gpu_projection(cpu_s_per_1000: dict, path: Path) -> None:
    """CPU cores one GPU would need to be fed at a given step rate, from each feed's measured CPU-s per row
    in epochs 2+ (the steady state of a long training run)."""
    lines = ["# Cores per GPU, projected from measured CPU-seconds per row (`benchmarks/ingest.py`)", "",
             "No GPU was lent when this was written, so the step rates are assumptions: these encoders on one",
             "accelerator step at tens of thousands of rows/s. Cores = step rate x CPU-s per row of the feed's",
             "epochs 2+ on this machine's cores (2 vCPUs); faster server cores need proportionally fewer.", "",
             "| feed | CPU-s / 1k rows | " + " | ".join(f"cores at {r:,} rows/s" for r in GPU_STEP_ROWS_PER_S) + " |",
             "|---|---|" + "---|" * len(GPU_STEP_ROWS_PER_S)]
    for feed, cpu in cpu_s_per_1000.items():
        lines.append(f"| {feed} | {cpu:.3f} | " + " | ".join(f"{r * cpu / 1000:.1f}" for r in GPU_STEP_ROWS_PER_S)
                     + " |")
    path.write_text("\n".join(lines) + "\n")


def result_keys(rows: list[dict], notes: list[str], name: str) -> dict:
    """The keys this benchmark merges into NAME.json: medians per feed, CPU per row, memory, the table rows."""
    # Systems not measured this time keep their previous rows, so one system can be re-measured alone.
    previous_path = HERE / "results" / f"{name}.json"
    previous = json.loads(previous_path.read_text()).get("ingest", {}) if previous_path.exists() else {}
    measured_now = {(r["system"], r["scale"]) for r in rows}
    rows = [r for r in previous.get("rows", []) if (r["system"], r["scale"]) not in measured_now
            and "epoch2plus_samples_per_s" in r] + rows
    rows.sort(key=lambda r: (r["scale"], SYSTEMS.index(r["system"])))
    by = {(r["system"], r["scale"]): r for r in rows}
    notes.append("Every feed decodes PNG to 3x32x32, hashes text to 48 token ids and computes a 32-band log-mel of "
                 "1 s at 8 kHz with resmm's own BatchPreprocessor, delivers batches of 64 rows as float32 pixels and "
                 "log-mel and int64 tokens, and draws balanced Poisson resampling copies of every batch.")
    ingest = {f"{s}": by[(s, 1)]["epoch2plus_samples_per_s"] for s in SYSTEMS if (s, 1) in by and s != "resmm"}
    if ("resmm", 1) in by:
        ingest = {"resmm_epoch1": by[("resmm", 1)]["epoch1_samples_per_s"],
                  "resmm_epoch2plus": by[("resmm", 1)]["epoch2plus_samples_per_s"], **ingest}
    keys = {
        "ingest_samples_per_s": ingest,
        "ingest_cpu_s_per_1000_rows": {s: by[(s, 1)]["epoch2plus_cpu_s_per_1000"] for s in SYSTEMS if (s, 1) in by},
        "peak_rss_mb": {f"{s}_{k}x": by[(s, k)]["peak_rss_mb"] for (s, k) in by},
        "peak_pss_mb": {f"{s}_{k}x": by[(s, k)]["peak_pss_mb"] for (s, k) in by},
        "peak_anon_rss_mb": {f"{s}_{k}x": by[(s, k)]["peak_anon_rss_mb"] for (s, k) in by},
        "ingest": {"rows": rows, "notes": notes},
    }
    return keys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="shard directory (default: the built-in dataset, built if missing)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run at 1x (epoch 1 + at least 4)")
    parser.add_argument("--runs-10x", type=int, default=1, help="runs at scales above 1 (each reads 10x the data)")
    parser.add_argument("--epochs-10x", type=int, default=2, help="epochs per run at scales above 1")
    parser.add_argument("--systems-10x", nargs="+", choices=SYSTEMS,
                        default=["resmm", "dataloader", "dataloader_on_cache"],
                        help="systems measured at scales above 1")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds before a run counts as failed")
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
            scale_rows, scale_notes = measure_scale(args, data_dir, scale, Path(work))
            rows += scale_rows
            notes += scale_notes
    keys = result_keys(rows, notes, args.name)
    if args.overrides:
        notes.append("resmm's feed ran with config overrides: " + " ".join(args.overrides))
    path = update_latest(keys, args.name)
    if args.name == "latest":
        write_gpu_projection(keys["ingest_cpu_s_per_1000_rows"], HERE / "results" / "gpu-projection.md")
    print(json.dumps({k: keys[k] for k in ("ingest_samples_per_s", "ingest_cpu_s_per_1000_rows", "peak_rss_mb")},
                     indent=2))
    print(f"[bench] wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
