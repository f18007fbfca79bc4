"""The Ray Data read is planned with resmm's reader and block size, not Ray 2.60's defaults (see
pipelines/ingest.py); with the cache off, each shard decodes in one task (pipelines/feature_cache.py)."""
import numpy as np
import pyarrow.parquet as pq
import torch

from pipelines.feature_cache import decoded_split
from pipelines.ingest import read_source, scan_source
from resmm.config import load_config
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.modalities.transforms import expand_batch


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
    dataset = decoded_split(source, spec, validation=None, val_fraction=0.1, batch_rows=5)  # 12-row shards: 3 parts
    batches = [expand_batch(b, spec) for b in dataset.iter_torch_batches(batch_size=64)]
    rows = {k: torch.cat([b[k] for b in batches]).numpy() for k in batches[0]}

    stats = dataset.stats()
    assert "MapBatches(decode_stage)" in stats and "ReadParquet" not in stats  # the task reads its own shard
    expected = BatchPreprocessor(spec)(pq.read_table(sorted(shard_dir.glob("*.parquet"))).to_pydict())

    def order(d):
        return sorted(range(36), key=lambda i: (d["label"][i], d["image"][i].sum(), d["text"][i].sum()))
    got, want = order(rows), order(expected)
    assert len(rows["label"]) == 36
    for key in expected:  # pixels and tokens exactly; the log-mel in the entries' fp16
        np.testing.assert_allclose(rows[key][got], expected[key][want], rtol=0, atol=2e-3 if key == "audio" else 0)
