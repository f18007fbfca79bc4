"""The benchmark feeds are comparable: each delivers every row of the same shards exactly once."""
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import feeds  # noqa: E402
from results_io import markdown  # noqa: E402


def test_resmm_and_dataloader_feeds_deliver_every_row(local_ray, shard_dir):
    files = sorted(str(p) for p in shard_dir.glob("*.parquet"))
    classes, counts = ["0", "1", "2"], [12, 12, 12]
    for feed in (feeds.feed_dataloader, feeds.feed_resmm):
        rows, seconds = feed(files, classes, counts)
        assert rows == 36 and seconds > 0, feed.__name__


def test_resmm_feed_under_a_small_object_store_budget_still_delivers_every_row(local_ray, shard_dir):
    import ray.data

    from resmm.config import load_config
    from resmm.train.driver import configure_execution

    files = sorted(str(p) for p in shard_dir.glob("*.parquet"))
    try:
        rows, _ = feeds.feed_resmm(files, ["0", "1", "2"], [12, 12, 12], ["data.object_store_budget_mb=64"])
        assert ray.data.DataContext.get_current().execution_options.resource_limits.object_store_memory == 64 * 2**20
        assert rows == 36
    finally:  # the session's other tests keep Ray's defaults
        configure_execution(ray.data.DataContext.get_current().execution_options, load_config())


def test_results_table_shows_medians_and_ratio():
    table = markdown({
        "machine": {"cpus": 2, "updated": "now"},
        "ingest": {"rows": [{"system": "resmm", "scale": 1, "samples_per_s": 700.0, "runs_samples_per_s": [700.0],
                             "peak_rss_mb": 4000.0, "resmm_ratio": 1.0}], "notes": []},
        "train": {"rows": {"streaming": {"samples_per_s": 300.0, "runs_samples_per_s": [300.0],
                                         "stall_fraction": 0.3}}, "streaming_over_in_memory": 0.69, "notes": []},
    })
    assert "| resmm | 1x | 700.0 | 700.0 | 4,000 | n/a | 1.00x |" in table and "**0.690x**" in table


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
