"""The Ray Data read is planned with resmm's sizes, not Ray 2.60's defaults (see pipelines/ingest.py)."""
import os

import pytest

from pipelines.ingest import footer_reader_actors, parquet_planning_env, read_source, scan_source


def footer_readers_started() -> int:
    """FooterReader actors this Ray instance has ever started (dead ones included), from Ray's state API."""
    import ray
    from ray.util.state import list_actors

    dashboard = "http://" + ray._private.worker.global_worker.node.address_info["webui_url"]
    return len(list_actors(address=dashboard, filters=[("class_name", "=", "FooterReader")], limit=10_000,
                           raise_on_missing_output=False))


def test_a_read_of_three_files_starts_one_footer_reader_not_32(local_ray, shard_dir):
    dataset = read_source(scan_source(str(shard_dir), ["image", "text", "audio"]), ["label"])
    before = footer_readers_started()
    assert sum(len(b["label"]) for b in dataset.iter_batches()) == 36
    assert footer_readers_started() - before == 1  # Ray's default starts 32 for every execution


@pytest.mark.parametrize("files, actors", [(1, 1), (200, 1), (201, 2), (10_000, 32)])
def test_footer_readers_scale_with_files_up_to_rays_default(files, actors):
    assert footer_reader_actors(files) == actors


def test_planning_env_is_set_only_while_planning_and_a_users_setting_wins(monkeypatch):
    monkeypatch.delenv("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", raising=False)
    monkeypatch.setenv("RAY_DATA_PARQUET_BIN_PACKING_BYTES", "1234")
    with parquet_planning_env(500):
        assert os.environ["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] == "3"
        assert os.environ["RAY_DATA_PARQUET_BIN_PACKING_BYTES"] == "1234"
    assert "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS" not in os.environ
    assert os.environ["RAY_DATA_PARQUET_BIN_PACKING_BYTES"] == "1234"
