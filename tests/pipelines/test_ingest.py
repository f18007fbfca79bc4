"""The Ray Data read is planned with resmm's reader and block size, not Ray 2.60's defaults (see
pipelines/ingest.py)."""
import numpy as np
import pyarrow.parquet as pq

from pipelines.ingest import build_split, read_source, scan_source
from resmm.config import load_config
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec


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


def test_each_shard_is_read_and_decoded_in_one_task(local_ray, shard_dir):
    cfg = load_config(None, [])
    spec = PreprocessSpec.from_config(cfg.data, ("image", "text", "audio"), [str(i) for i in range(10)])
    source = scan_source(str(shard_dir), list(spec.modalities))
    dataset = build_split(source, spec, validation=None, val_fraction=0.1, batch_rows=5)  # 12-row shards: 3 parts
    rows = sorted((r for r in dataset.iter_rows()), key=lambda r: (r["label"], r["image"].sum(), r["audio"].sum()))

    stats = dataset.stats()
    assert "ReadParquet->MapBatches(preprocess_block)" in stats  # fused: encoded bytes never cross the object store
    expected = BatchPreprocessor(spec)(pq.read_table(sorted(shard_dir.glob("*.parquet"))).to_pydict())
    order = sorted(range(36), key=lambda i: (expected["label"][i], expected["image"][i].sum(), expected["audio"][i].sum()))
    assert len(rows) == 36
    for key in expected:
        np.testing.assert_allclose(np.stack([r[key] for r in rows]), expected[key][order], rtol=1e-6, atol=1e-6)
