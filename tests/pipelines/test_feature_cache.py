"""The decoded-feature cache on real shards and a real (local) Ray: what it decodes, what it reuses, and that what it
feeds equals a fresh decode; corrupt entries and concurrent fills."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.feature_cache import CacheTarget, decoded_split, fill_shard, read_cached_split
from pipelines.ingest import scan_source
from pipelines.validation import Rules, validate_source
from resmm.config import load_config
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.data.cache import entry_key, list_entries, prune_entries, read_verified
from resmm.modalities.transforms import expand_batch
from resmm.data.split import buckets_of, in_validation
from resmm.sources.shards import open_filesystem
from tests.conftest import contract_table

ALL = ["image", "text", "audio"]
RULES = Rules(True, True, ("0", "1", "2"), 0.25)
GROUPED = Rules(True, True, ("0", "1", "2"), 0.25, "group_id")
ROWS_PER_SHARD = 12


def make_spec(**image):
    cfg = load_config()
    data = cfg.data.model_copy(update={"image": cfg.data.image.model_copy(update=image)}) if image else cfg.data
    return PreprocessSpec.from_config(data, ALL, ("0", "1", "2"))


@pytest.fixture
def shards(tmp_path):
    root = tmp_path / "shards"
    root.mkdir()
    for shard in range(3):
        pq.write_table(contract_table(rows=ROWS_PER_SHARD, seed=shard * 100), root / f"part-{shard}.parquet")
    return root


@pytest.fixture
def grouped_shards(tmp_path):
    """Three shards whose rows are photos of 5 objects (a group spans shards), the last row of each ungrouped."""
    root = tmp_path / "grouped"
    root.mkdir()
    groups = [f"object-{i % 5}" for i in range(ROWS_PER_SHARD - 1)] + [None]
    for shard in range(3):
        table = contract_table(rows=ROWS_PER_SHARD, seed=shard * 100)
        pq.write_table(table.append_column("group_id", pa.array(groups, pa.string())), root / f"part-{shard}.parquet")
    return root


def group_or_id(table) -> list:
    return [g or s for s, g in zip(table.column("sample_id").to_pylist(), table.column("group_id").to_pylist())]


def expected_validation(root) -> np.ndarray:
    """Each row's side by its group, else its sample_id, in file order."""
    return in_validation(buckets_of(group_or_id(pq.read_table(root))), GROUPED.val_fraction)


def validate(root, spec, cache_dir, batch_rows=5, rules=RULES):
    return validate_source(scan_source(str(root), ALL), spec, rules, batch_rows=batch_rows, progress=lambda _: None,
                           cache=CacheTarget.at(str(cache_dir)) if cache_dir else None)


def rows_of(dataset, spec) -> dict:
    """Every row of a split as model inputs (cached features widened), sorted by a digest of the row."""
    batches = [expand_batch(b, spec) for b in dataset.iter_torch_batches(batch_size=7)]
    rows = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    keys = [hash((rows["image"][i].numpy().tobytes(), rows["text"][i].numpy().tobytes()))
            for i in range(len(rows["label"]))]
    order = np.argsort(keys, kind="stable")
    return {k: v[order] for k, v in rows.items()}


def test_second_run_decodes_nothing_and_feeds_what_a_fresh_decode_feeds(local_ray, shards, tmp_path):
    spec = make_spec()
    first = validate(shards, spec, tmp_path / "cache")
    assert (first.cache.decoded_rows, first.cache.cached_rows) == (3 * ROWS_PER_SHARD, 0)
    assert first.cache.entries_built == 3 and first.cache.bytes > 0
    second = validate(shards, spec, tmp_path / "cache")
    assert (second.cache.decoded_rows, second.cache.cached_rows) == (0, 3 * ROWS_PER_SHARD)
    assert second.cache.entries_reused == 3
    assert second.train_profile == first.train_profile and second.val_profile == first.val_profile

    for side in (False, True):
        cached = rows_of(read_cached_split(list(second.entries), second.cache.location, spec, validation=side,
                                           val_fraction=0.25), spec)
        fresh = rows_of(decoded_split(second.source, spec, validation=side, val_fraction=0.25, batch_rows=5), spec)
        assert len(cached["label"]) == (second.val_profile if side else second.train_profile).rows > 0
        # One path: the cache-off stream decodes with the fill's own function, so the worker gets the same arrays.
        for key in ("image", "text", "audio", "label", "image_present", "text_present", "audio_present", "row_id"):
            assert cached[key].dtype == fresh[key].dtype and torch.equal(cached[key], fresh[key]), key
    direct = decoded_rows(shards, spec)  # the decoders themselves, on the source rows
    every = rows_of(read_cached_split(list(second.entries), second.cache.location, spec, validation=None,
                                      val_fraction=0.25), spec)
    for key in ("image", "text", "label", "image_present", "text_present", "audio_present"):
        assert torch.equal(every[key], direct[key]), key  # pixels and tokens are stored exactly
    audio_error = (every["audio"] - direct["audio"]).abs().max().item()
    assert every["audio"].dtype == torch.float32 and 0 < audio_error <= 2e-3  # fp16 storage, not exact


def decoded_rows(root, spec) -> dict:
    """Every source row through BatchPreprocessor, sorted as rows_of sorts."""
    decoded = BatchPreprocessor(spec)(pq.read_table(sorted(Path(root).glob("*.parquet"))).to_pydict())
    rows = {k: torch.from_numpy(v) for k, v in decoded.items()}
    keys = [hash((rows["image"][i].numpy().tobytes(), rows["text"][i].numpy().tobytes()))
            for i in range(len(rows["label"]))]
    order = np.argsort(keys, kind="stable")
    return {k: v[order] for k, v in rows.items()}


def test_compact_columns_are_small_types(local_ray, shards, tmp_path):
    spec = make_spec()
    result = validate(shards, spec, tmp_path / "cache")
    table = pq.read_table(result.entries[0])
    widths = {m: table.schema.field(m).type.byte_width for m in ALL}
    assert widths["image"] == 3 * 32 * 32  # uint8 C×H×W
    assert widths["text"] == 2 * spec.settings["text"].max_tokens  # uint16 tokens (8192 buckets)
    n_mels, frames = spec.input_shape("audio")
    assert widths["audio"] == 2 * n_mels * frames  # fp16 log-mel


def test_a_new_shard_is_the_only_one_decoded(local_ray, shards, tmp_path):
    spec = make_spec()
    validate(shards, spec, tmp_path / "cache")
    pq.write_table(contract_table(rows=5, seed=900), shards / "part-new.parquet")
    again = validate(shards, spec, tmp_path / "cache")
    assert (again.cache.decoded_rows, again.cache.cached_rows) == (5, 3 * ROWS_PER_SHARD)


def test_a_changed_preprocessing_key_decodes_again(local_ray, shards, tmp_path):
    validate(shards, make_spec(), tmp_path / "cache")
    resized = validate(shards, make_spec(size_px=24), tmp_path / "cache")
    assert (resized.cache.decoded_rows, resized.cache.cached_rows) == (3 * ROWS_PER_SHARD, 0)
    assert pq.read_table(resized.entries[0]).schema.field("image").type.byte_width == 3 * 24 * 24
    assert len(list_entries(*open_filesystem(str(tmp_path / "cache")))) == 6  # both sizes kept, side by side


def test_corrupt_and_truncated_entries_are_counted_and_rebuilt(local_ray, shards, tmp_path):
    spec = make_spec()
    first = validate(shards, spec, tmp_path / "cache")
    flipped, truncated = first.entries[0], first.entries[1]
    data = bytearray(open(flipped, "rb").read())
    middle = len(data) // 2
    data[middle: middle + 8] = bytes(b ^ 0xFF for b in data[middle: middle + 8])
    open(flipped, "wb").write(bytes(data))
    whole = open(truncated, "rb").read()
    open(truncated, "wb").write(whole[: len(whole) * 2 // 3])
    fs, _ = open_filesystem(flipped)
    key = entry_key(first.source.shards[0], spec, CacheTarget.at("x").versions, RULES.group_column)
    assert read_verified(fs, flipped, key, ROWS_PER_SHARD)[0] is not None

    again = validate(shards, spec, tmp_path / "cache")
    assert again.cache.entries_rebuilt == 2 and again.cache.decoded_rows == 2 * ROWS_PER_SHARD
    assert again.cache.cached_rows == ROWS_PER_SHARD
    assert again.train_profile == first.train_profile and again.quarantined == first.quarantined
    third = validate(shards, spec, tmp_path / "cache")
    assert third.cache.decoded_rows == 0 and third.cache.entries_rebuilt == 0


def test_two_jobs_filling_one_entry_both_finish(shards, tmp_path):
    spec = make_spec()
    shard = scan_source(str(shards), ALL).shards[0]
    target = CacheTarget.at(str(tmp_path / "cache"))
    results, errors = [], []

    def fill():
        try:
            results.append(fill_shard(shard, spec, RULES, target, batch_rows=3))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=fill) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2
    assert results[0].drop_columns(["cache_state"]).equals(results[1].drop_columns(["cache_state"]))
    fs, path, key = target.entry(shard, spec, RULES.group_column)
    assert read_verified(fs, path, key, ROWS_PER_SHARD)[0] is None
    assert [e["path"] for e in list_entries(fs, str(tmp_path / "cache"))] == [path]  # no temporary file left


def test_prune_deletes_only_old_entries(local_ray, shards, tmp_path):
    validate(shards, make_spec(), tmp_path / "cache")
    fs, root = open_filesystem(str(tmp_path / "cache"))
    entries = list_entries(fs, root)
    assert prune_entries(fs, root, older_than_days=1) == []
    newest = max(e["mtime"] for e in entries)
    assert len(prune_entries(fs, root, older_than_days=1, now=newest + 2 * 86400)) == 3
    assert list_entries(fs, root) == []


def test_cache_off_shard_list_is_untouched(local_ray, shards, tmp_path):
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    result = validate_source(scan_source(str(shards), ALL), make_spec(), RULES, batch_rows=5,
                             progress=lambda _: None)
    assert result.cache is None and result.entries is None and not (tmp_path / "cache").exists()


def test_entries_and_verdicts_split_by_group(grouped_shards, tmp_path):
    spec = make_spec()
    shard = scan_source(str(grouped_shards), ALL).shards[0]
    target = CacheTarget.at(str(tmp_path / "cache"))
    built = fill_shard(shard, spec, GROUPED, target, batch_rows=5)
    reused = fill_shard(shard, spec, GROUPED, target, batch_rows=5)  # verdicts from the stored split_bucket

    entry = pq.read_table(target.entry(shard, spec, "group_id")[1])
    np.testing.assert_array_equal(entry.column("split_bucket").to_numpy(),
                                  buckets_of(group_or_id(pq.read_table(shard.path))))
    assert set(reused.column("cache_state").to_pylist()) == {"reused"}
    expected = expected_validation(grouped_shards)[:ROWS_PER_SHARD].tolist()
    assert built.column("is_val").to_pylist() == reused.column("is_val").to_pylist() == expected
    assert True in expected and False in expected
    # An entry bucketed by sample_id is another entry: never reused under the grouping.
    assert target.entry(shard, spec, None)[1] != target.entry(shard, spec, "group_id")[1]


def test_streamed_and_cached_splits_keep_each_group_on_one_side(local_ray, grouped_shards, tmp_path):
    spec = make_spec()
    val_rows = int(expected_validation(grouped_shards).sum())
    streamed = validate(grouped_shards, spec, None, rules=GROUPED)
    cached = validate(grouped_shards, spec, tmp_path / "cache", rules=GROUPED)
    assert streamed.val_profile.rows == cached.val_profile.rows == val_rows
    assert streamed.train_profile.rows == cached.train_profile.rows == 3 * ROWS_PER_SHARD - val_rows
    for side, rows in ((True, val_rows), (False, 3 * ROWS_PER_SHARD - val_rows)):
        from_cache = rows_of(read_cached_split(list(cached.entries), cached.cache.location, spec, validation=side,
                                               val_fraction=0.25), spec)
        from_source = rows_of(decoded_split(streamed.source, spec, validation=side, val_fraction=0.25, batch_rows=5,
                                          group_column="group_id"), spec)
        assert len(from_cache["label"]) == rows
        assert torch.equal(from_cache["image"], from_source["image"])
