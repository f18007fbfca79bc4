"""Ray Data stages of the decoded-feature cache (resmm/data/cache.py): fill an entry per shard during the
validation pass, and stream the training and validation splits from the entries (data.cache=on) or by decoding
the shards again each epoch with the same function (data.cache=off); both hand the worker the same arrays.

Filling runs one task per shard: a shard whose entry is whole is not decoded and not re-inspected (its verdicts
are read back from the entry); any other shard is read, decoded `batch_rows` rows at a time and written to a
fresh entry, so a task's memory stays one slice of rows whatever the shard's size. Without the cache the
validation pass is the same stage with NoCache, which decodes the same way and stores nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from ray.data._internal.datasource_v2.common.synthesized_columns import _compute_row_hashes

from pipelines.ingest import ROW_HASH, file_list_reader
from pipelines.verdicts import Rules, decode_modalities, row_labels, source_columns, verdict_table
from resmm.data.cache import (CacheStats, Layout, column_array, decode_versions, entry_key, entry_path, entry_part,
                              read_verified, write_entry)
from resmm.data.cells import column_cells
from resmm.data.split import SPLIT_GROUP, buckets_of, in_validation, split_keys
from resmm.modalities.compact import decode_sources, layout_of
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.sources.shards import arrow_filesystem, open_filesystem

CACHE_STATE = "cache_state"  # verdict column of a filled shard: built, rebuilt or reused
CACHE_BYTES = "cache_bytes"
_VERDICT_COLUMNS = [ROW_HASH, "sample_id", "label", "split_bucket", "pattern", "events"]


@dataclass(frozen=True)
class Slice:
    """`batch_rows` decoded rows of one shard: what an entry stores of them, and what their verdicts need."""

    row_hashes: np.ndarray
    sample_ids: list
    labels: list
    buckets: np.ndarray
    pattern: np.ndarray
    events: list
    values: dict  # modality -> (N, ...) values in the compact form an entry stores

    def verdicts(self, shard, rules: Rules) -> pa.Table:
        return verdict_table(self.row_hashes, [shard.path] * len(self.row_hashes), self.sample_ids, self.labels,
                             self.buckets, self.pattern, self.events, rules)


@dataclass(frozen=True)
class CacheTarget:
    """Where one run's entries go, and the decode versions that key them (read once, on the driver)."""

    url: str
    versions: dict

    @classmethod
    def at(cls, url: str) -> "CacheTarget":
        return cls(url.rstrip("/"), decode_versions(decode_sources()))

    def entry(self, shard, spec: PreprocessSpec, group_column: str | None) -> tuple[object, str, str]:
        """(cache filesystem, entry path, key) of one shard."""
        fs, root = open_filesystem(self.url)
        key = entry_key(shard, spec, self.versions, group_column)
        return fs, entry_path(root, shard, key), key

    def fill(self, shard, spec: PreprocessSpec, rules: Rules, batch_rows: int) -> tuple[pa.Table, str, int]:
        """Make sure `shard` has a whole entry, decoding it only when it does not: (its verdict rows, built,
        rebuilt or reused, the entry's bytes)."""
        fs, path, key = self.entry(shard, spec, rules.group_column)
        problem, stored = read_verified(fs, path, key, shard.num_rows, _VERDICT_COLUMNS)
        if problem is None:  # the stored verdict columns, as the slice that wrote them held them
            reused = Slice(stored.column(ROW_HASH).to_numpy(), stored.column("sample_id").to_pylist(),
                           stored.column("label").to_pylist(), stored.column("split_bucket").to_numpy(),
                           stored.column("pattern").to_numpy(), stored.column("events").to_pylist(), {})
            return reused.verdicts(shard, rules), "reused", int(fs.info(path).get("size") or 0)
        verdicts, layout = [], layout_of(spec)

        def parts():  # written as decoded, one slice at a time; each slice's verdicts kept on the way
            for s in decoded_slices(shard, spec, rules.group_column, batch_rows):
                verdicts.append(s.verdicts(shard, rules))
                yield entry_part(s.row_hashes, s.sample_ids, s.labels, s.buckets, s.pattern, s.events,
                                 s.values, layout)

        size = write_entry(fs, path, parts(), key, shard.num_rows, layout)
        return _joined(verdicts, rules), "built" if problem == "missing" else "rebuilt", size

    def entries(self, shards, spec: PreprocessSpec, group_column: str | None) -> tuple[str, ...]:
        return tuple(self.entry(shard, spec, group_column)[1] for shard in shards)

    def kept(self, stats: CacheStats) -> CacheStats:
        """What the run reports of the cache."""
        return stats


@dataclass(frozen=True)
class NoCache:
    """data.cache=off: the same validation pass decodes every shard as a fill does and keeps only its verdicts;
    each epoch then decodes the shards again through the same function (decoded_split)."""

    url: None = None

    def fill(self, shard, spec: PreprocessSpec, rules: Rules, batch_rows: int) -> tuple[pa.Table, str, int]:
        verdicts = [s.verdicts(shard, rules) for s in decoded_slices(shard, spec, rules.group_column, batch_rows)]
        return _joined(verdicts, rules), "off", 0  # the decoded values are discarded

    def entries(self, shards, spec: PreprocessSpec, group_column: str | None) -> None:
        return None

    def kept(self, stats: CacheStats) -> None:
        return None  # no cache to report


def _joined(verdicts: list, rules: Rules) -> pa.Table:
    return pa.concat_tables(verdicts) if verdicts else verdict_table(
        [], [], [], [], np.zeros(0, np.uint16), np.zeros(0, np.int8), [], rules)


def fill_shard(shard, spec: PreprocessSpec, rules: Rules, target: CacheTarget | NoCache, batch_rows: int) -> pa.Table:
    """`target`'s fill of one shard (see CacheTarget.fill): its verdict rows, with the cache state and the entry's
    bytes as two more columns."""
    verdicts, state, size = target.fill(shard, spec, rules, batch_rows)
    return verdicts.append_column(CACHE_STATE, pa.array([state] * verdicts.num_rows, pa.string())).append_column(
        CACHE_BYTES, pa.array([size] * verdicts.num_rows, pa.int64()))


def decoded_slices(shard, spec: PreprocessSpec, group_column: str | None, batch_rows: int):
    """One shard, decoded `batch_rows` rows at a time (memory stays one slice): what the validation pass stores
    in an entry, and what every epoch feeds with the cache off."""
    fs, path = open_filesystem(shard.url)
    offset = 0
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        columns = [c for c in source_columns(spec, group_column) if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            table = pa.Table.from_batches([batch])
            rows = table.num_rows
            # Ray's own row hash of this row (file path and position), so that the quarantine, which names rows by
            # it, means the same rows whether they stream from the source or from the cache.
            row_hashes = _compute_row_hashes(shard.path, offset, rows)
            offset += rows
            values, pattern, events = decode_modalities(table, spec)
            yield Slice(row_hashes, column_cells(table.column("sample_id"), rows), row_labels(table),
                        buckets_of(split_keys(table, group_column)), pattern, events, values)


def fill_stage(batch: dict, *, shards, spec: PreprocessSpec, rules: Rules, target: CacheTarget | NoCache,
               batch_rows: int) -> pa.Table:
    """map_batches stage over shard indices (one per task)."""
    return pa.concat_tables([fill_shard(shards[int(i)], spec, rules, target, batch_rows)
                             for i in batch["shard"]])


def fill_entries(shards, spec: PreprocessSpec, rules: Rules, target: CacheTarget | NoCache,
                 batch_rows: int) -> ray.data.Dataset:
    """Verdict rows of every shard (see fill_shard), one task per shard, filling the cache as they go."""
    return per_shard(fill_stage, shards, spec=spec, rules=rules, target=target, batch_rows=batch_rows)


def per_shard(stage, shards, **kwargs) -> ray.data.Dataset:
    """`stage` run over `shards`, one task per shard: it gets a batch of one shard index, `shards` and `kwargs`."""
    shards = tuple(shards)
    return ray.data.from_items([{"shard": i} for i in range(len(shards))], override_num_blocks=len(shards)).map_batches(
        stage, batch_size=1, batch_format="numpy", fn_kwargs={"shards": shards, **kwargs})


def hand_out(row_hashes: np.ndarray | None, labels: list, buckets: np.ndarray | None, pattern: np.ndarray,
             compact: dict, *, spec: PreprocessSpec, quarantined: np.ndarray, validation: bool | None,
             val_fraction: float) -> dict:
    """What both training streams hand the worker from a slice of rows, read from an entry or just decoded: the
    rows left after dropping quarantined ones and keeping one side of the split, as compact arrays with presence,
    label indices and row ids (WorkerTransforms.expand widens them on the worker); validation rows (and every row
    of an unsplit source) also carry their split group, which the bootstrap resamples."""
    keep = np.ones(len(labels), dtype=bool)
    if len(quarantined) and row_hashes is not None:
        keep &= ~np.isin(row_hashes, quarantined)
    if validation is not None:
        in_val = in_validation(buckets, val_fraction)
        keep &= in_val if validation else ~in_val
    every = bool(keep.all())
    pattern = pattern if every else pattern[keep]
    out = {}
    for bit, m in enumerate(spec.modalities):
        out[m] = compact[m] if every else compact[m][keep]
        out[f"{m}_present"] = ((pattern >> bit) & 1).astype(np.float32)
    out["label"] = BatchPreprocessor(spec).label_indices(labels if every else [v for v, k in zip(labels, keep) if k])
    if row_hashes is not None:  # the training feed draws a row's copies from its id
        out["row_id"] = (row_hashes if every else row_hashes[keep]).view(np.int64)
    if validation is not False and buckets is not None:
        out[SPLIT_GROUP] = (buckets if every else buckets[keep]).astype(np.int64)
    return out


def unpack_entries(table: pa.Table, *, spec: PreprocessSpec, layout: Layout, quarantined: np.ndarray = (),
                   validation: bool | None = None, val_fraction: float = 0.0) -> dict:
    """map_batches stage over entry blocks: hand_out of the stored rows."""
    row_hashes = table.column(ROW_HASH).to_numpy() if ROW_HASH in table.column_names else None
    buckets = table.column("split_bucket").to_numpy() if "split_bucket" in table.column_names else None
    return hand_out(row_hashes, table.column("label").to_pylist(), buckets, table.column("pattern").to_numpy(),
                    {m: column_array(table.column(m), *layout.shapes[m]) for m in spec.modalities}, spec=spec,
                    quarantined=quarantined, validation=validation, val_fraction=val_fraction)


def decode_stage(batch: dict, *, shards, spec: PreprocessSpec, group_column: str | None, batch_rows: int,
                 quarantined: np.ndarray, validation: bool | None, val_fraction: float):
    """map_batches stage over shard indices (one per task): each shard decoded as the validation pass decoded it
    (decoded_slices), in the compact form an entry stores, handed out as a cached read hands out an entry."""
    for i in batch["shard"]:
        for s in decoded_slices(shards[int(i)], spec, group_column, batch_rows):
            yield hand_out(s.row_hashes, s.labels, s.buckets, s.pattern, s.values, spec=spec,
                           quarantined=quarantined, validation=validation, val_fraction=val_fraction)


def decoded_split(source, spec: PreprocessSpec, *, validation: bool | None, val_fraction: float, batch_rows: int,
                  group_column: str | None = None, quarantined: np.ndarray | None = None) -> ray.data.Dataset:
    """data.cache=off: stream one side of the split (or every row) by decoding the shards again, one task per
    shard, through the very function the validation pass decoded them with. It hands out what
    read_cached_split hands out for the same rows, so the worker cannot tell the two apart."""
    return per_shard(decode_stage, source.shards, spec=spec, group_column=group_column, batch_rows=batch_rows,
                     quarantined=quarantined if quarantined is not None else np.zeros(0, np.uint64),
                     validation=validation, val_fraction=val_fraction)


def read_cached_split(entries: list[str], cache_url: str, spec: PreprocessSpec, *, validation: bool | None,
                      val_fraction: float, quarantined: np.ndarray | None = None) -> ray.data.Dataset:
    """Stream one side of the split (or every row) from the entries of a validated source: no decoding."""
    fs, _ = open_filesystem(cache_url)
    with file_list_reader(ray.data.DataContext.get_current()):
        dataset = ray.data.read_parquet(entries, filesystem=arrow_filesystem(fs),
                                        columns=[ROW_HASH, "label", "split_bucket", "pattern", *spec.modalities],
                                        override_num_blocks=len(entries))
    return dataset.map_batches(
        unpack_entries, batch_format="pyarrow", batch_size=None,
        fn_kwargs={"spec": spec, "layout": layout_of(spec), "validation": validation, "val_fraction": val_fraction,
                   "quarantined": quarantined if quarantined is not None else np.zeros(0, np.uint64)},
    )
