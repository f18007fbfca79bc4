"""The benchmark feeds are comparable: each delivers every row of the same shards exactly once."""
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import feeds  # noqa: E402
from results_io import markdown  # noqa: E402


def job(shard_dir, tmp_path, epochs=2, overrides=()):
    return {"files": sorted(str(p) for p in shard_dir.glob("*.parquet")), "classes": ["0", "1", "2"],
            "class_counts": [12, 12, 12], "epochs": epochs, "cache": str(tmp_path / "cache"),
            "overrides": list(overrides)}


def test_every_feed_delivers_every_row_every_epoch(local_ray, shard_dir, tmp_path):
    """Each feed yields the 36 rows of the shards per epoch (in full batches of 64, so 0 rows: too few), and
    dataloader_on_cache reads what resmm's fill wrote. With 3 shards of 12 rows, batches are partial: the feeds
    are run with a batch of 4 rows."""
    original = feeds.BATCH
    feeds.BATCH = 4
    try:
        spec = job(shard_dir, tmp_path)
        filled = feeds._fill(spec["files"], feeds.default_spec(spec["classes"]), str(tmp_path / "shared"))
        spec["entries"] = list(filled.entries)
        for name in ("resmm", "resmm_cache_off", "dataloader", "dataloader_on_cache", "hf_datasets"):
            epochs = feeds.FEEDS[name]({**spec, "cache": str(tmp_path / name)})
            assert [e["rows"] for e in epochs] == [36, 36], name
            assert all(e["end"] > e["start"] for e in epochs), name
    finally:
        feeds.BATCH = original


def test_resmm_feed_under_a_small_object_store_budget_still_delivers_every_row(local_ray, shard_dir, tmp_path):
    import ray.data

    from resmm.config import load_config
    from resmm.train.driver import configure_execution

    original = feeds.BATCH
    feeds.BATCH = 4
    try:
        epochs = feeds.feed_resmm(job(shard_dir, tmp_path, 1, ["data.object_store_budget_mb=64"]))
        assert ray.data.DataContext.get_current().execution_options.resource_limits.object_store_memory == 64 * 2**20
        assert epochs[0]["rows"] == 36
    finally:  # the session's other tests keep Ray's defaults
        feeds.BATCH = original
        configure_execution(ray.data.DataContext.get_current().execution_options, load_config())


def test_results_table_shows_both_epoch_phases_cpu_and_ratio():
    row = {"system": "resmm", "scale": 1, "epochs": 5, "epoch1_samples_per_s": 1300.0, "startup_s": 2.5,
           "epoch1_with_startup_samples_per_s": 1000.0, "epoch2plus_samples_per_s": 9000.0, "runs_epoch2plus_samples_per_s": [9000.0], "epoch1_cpu_s_per_1000": 1.5,
           "epoch2plus_cpu_s_per_1000": 0.17, "peak_rss_mb": 3500.0, "peak_pss_mb": 2000.0, "peak_anon_rss_mb": 2200.0,
           "sampler_cpu_share": 0.05, "measured": "2026-12-07"}
    dataloader = {**row, "system": "dataloader", "epoch2plus_samples_per_s": 3000.0, "startup_s": 0.0,
                  "epoch1_samples_per_s": 1625.0, "epoch1_with_startup_samples_per_s": 1625.0,
                  "runs_epoch2plus_samples_per_s": [3000.0]}
    on_cache = {**dataloader, "system": "dataloader_on_cache", "epoch2plus_samples_per_s": 10000.0,
                "runs_epoch2plus_samples_per_s": [10000.0]}
    table = markdown({
        "machine": {"cpus": 2, "updated": "now"},
        "ingest": {"rows": [row, dataloader, on_cache], "notes": []},
        "train": {"rows": {"streaming": {"samples_per_s": 300.0, "runs_samples_per_s": [300.0],
                                         "stall_fraction": 0.3, "step_ms": 364.0, "step_cpu_ms": 351.5}},
                  "streaming_over_in_memory": 0.69, "notes": []},
    })
    assert ("| resmm | 1x | 5 | 2.50 | 1,300.0 | 1,000.0 | 9,000.0 | 9,000.0 | 1.50 | 0.17 | 3,500 | 2,000 | 2,200 "
            "| 1.00x | 0.050 | 2026-12-07 |") in table  # the sampler's own CPU, and when the row was measured
    assert ("| dataloader | 1x | 5 | 0.00 | 1,625.0 | 1,625.0 | 3,000.0 | 3,000.0 | 1.50 | 0.17 | 3,500 | 2,000 | "
            "2,200 | 3.00x |") in table
    assert "epochs 2+: resmm ÷ DataLoader on the same cache entries = **0.90x**" in table
    assert ("epoch 1: resmm ÷ re-decoding DataLoader = **0.80x**, or 0.62x with Ray Data's start-up (2.5 s) "
            "counted in") in table
    assert "**0.690x**" in table
    stale = markdown({"machine": {"cpus": 2, "updated": "now"},
                      "ingest": {"rows": [row, dataloader, {**on_cache, "measured": "2026-12-01"}], "notes": []}})
    assert "re-decoding DataLoader = **0.80x**" in stale
    assert "same cache entries" not in stale  # never today's resmm against another day's DataLoader
    assert "| 0.300 | n/a | 364 | 352 |" in table  # a step's wall time, then its thread's CPU time


def test_the_tree_sampler_reads_cpu_and_memory_as_psutil_does():
    import os
    import subprocess
    import time

    import psutil

    from ingest import process_sample

    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # CPU time to read back
        pass
    cpu, rss, anon = process_sample(os.getpid())
    me = psutil.Process()
    assert abs(cpu - (me.cpu_times().user + me.cpu_times().system)) < 0.05 and cpu >= 0.3
    assert abs(rss - me.memory_info().rss) < 16 * 2**20 and 0 < anon <= rss
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert process_sample(gone.pid) is None


def test_missing_bound_copy_nulls_only_the_chosen_modality_in_a_stable_half(tmp_path, shard_dir):
    import pyarrow.parquet as pq

    import missing_bound

    source = pq.read_table(shard_dir)
    counts = missing_bound.write_degraded_copy(shard_dir, tmp_path / "copy", "audio", 0.5)
    copy = pq.read_table(tmp_path / "copy")
    dropped = missing_bound.dropped_rows(copy.column("sample_id").to_pylist(), 0.5)
    assert counts["rows"] == copy.num_rows == source.num_rows
    assert 0.3 < dropped.mean() < 0.7  # a hash share, not an exact half, on 36 rows
    assert copy.column("audio").is_null().to_numpy(zero_copy_only=False)[dropped].all()
    kept = ~dropped
    assert copy.column("audio").filter(kept).to_pylist() == source.column("audio").filter(kept).to_pylist()
    assert copy.column("image").to_pylist() == source.column("image").to_pylist()
    assert counts["nulled"] == int(dropped.sum()) - source.column("audio").filter(dropped).null_count


def test_missing_bound_is_the_mean_of_full_and_the_pair_without_the_modality():
    import missing_bound

    full = {"metrics": {"val_balanced_accuracy": 0.8},
            "robustness": {"patterns_balanced": {"audio+text": 0.6, "image+text": 0.7}}}
    degraded = {"metrics": {"val_balanced_accuracy": 0.74},
                "robustness": {"patterns_balanced": {"audio+text": 0.5, "image+text": 0.6}},
                "epochs": 3, "wall_time_s": 10.0}
    row = missing_bound.bound_row(full, degraded, "image", {"rows": 1}, [])
    assert row["pair_without"] == "audio+text" and abs(row["bound"] - 0.7) < 1e-9
    assert row["holds"] and abs(row["margin"] - 0.04) < 1e-9
    assert not missing_bound.bound_row(full, degraded, "audio", {"rows": 1}, [])["holds"]  # bound 0.75 > 0.74


def test_the_encoder_family_report_lines_up_each_encoder_by_corpus_and_seed(tmp_path, monkeypatch):
    import json

    import encoder_family_report as report

    monkeypatch.setattr(report, "RESULTS", tmp_path)
    probe = {"variants": {"resmm": {"balanced_accuracy": [0.5, 0.7], "params": 10},
                          "lstm": {"balanced_accuracy": [0.4, 0.2, 0.3], "params": 12}}}
    (tmp_path / "encoder_probe-stamps-text.json").write_text(json.dumps(probe))
    grid = [{"name": "defaults", "val_balanced_accuracy": 0.61, "predictor_val_balanced_accuracy": 0.62},
            {"name": "text lstm", "val_balanced_accuracy": 0.55, "predictor_val_balanced_accuracy": 0.57}]
    (tmp_path / "encoders-stamps-s1.json").write_text(json.dumps(grid))
    (tmp_path / "holdout-encoders-stamps-s1.json").write_text(json.dumps(
        {"runs": {"encoders-stamps-s1: text lstm": {"balanced_accuracy": 0.21}}}))
    assert report.alone_table()[2:] == ["| text | resconv (default) |  | 0.600 (0.500, 0.700) | 10 |",
                                        "| text | lstm |  | 0.300 (0.400, 0.200, 0.300) | 12 |"]
    assert report.fused_table() == ["| setting | stamps s1 val (chosen) | stamps s1 holdout |", "|---|---|---|",
                                    "| defaults | 0.610 (0.620) |  |", "| text lstm | 0.550 (0.570) | 0.210 |"]
