"""The Ray Data read is planned with resmm's reader and block size, not Ray 2.60's defaults (see
pipelines/ingest.py)."""
from pipelines.ingest import read_source, scan_source


def footer_readers_started() -> int:
    """FooterReader actors this Ray instance has ever started (dead ones included), from Ray's state API."""
    import ray
    from ray.util.state import list_actors

    dashboard = "http://" + ray._private.worker.global_worker.node.address_info["webui_url"]
    return len(list_actors(address=dashboard, filters=[("class_name", "=", "FooterReader")], limit=10_000,
                           raise_on_missing_output=False))


def test_every_epoch_reads_without_re_listing_footers(local_ray, shard_dir):
    dataset = read_source(scan_source(str(shard_dir), ["image", "text", "audio"]), ["label"], row_hashes=True)
    before = footer_readers_started()
    epochs = [sorted(h for b in dataset.iter_batches(batch_size=100) for h in b["row_hash"].tolist()) for _ in range(2)]
    assert len(epochs[0]) == 36 and epochs[0] == epochs[1]  # every row, the same row hashes on every pass
    assert footer_readers_started() == before  # Ray's V2 reader starts 32 per execution
    assert "ListFiles" not in dataset.stats() and "ReadParquet" in dataset.stats()
