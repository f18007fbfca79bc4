"""The validation stage: one streaming Ray Data pass that finds faulty files and rows before anything trains.

one task per shard decodes it with the very decoders training uses (pipelines/feature_cache.py fill_entries) →
the driver sums the per-row verdicts, finds duplicate ids, checks every file's row count against its footer, and
profiles the clean training rows. Quarantined rows are then streamed once more, alone, into a Parquet file with
reasons.

With the decoded-feature cache on (`data.cache=on`), each shard's decoded features go to its entry, and a shard
whose entry is whole is neither decoded nor inspected again; with it off, the same decoded output is discarded.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from pipelines.feature_cache import CACHE_BYTES, CACHE_STATE, CacheTarget, NoCache, fill_entries
from pipelines.ingest import ROW_HASH, Source, read_source, without_files
from pipelines.verdicts import Rules
from resmm.modalities import modality_faults
from resmm.modalities.spec import PreprocessSpec
from resmm.data.cache import CacheStats
from resmm.sources.contract import check_group_column
from resmm.sources.profile import DataProfile
from resmm.sources.quarantine import DUPLICATE_SAMPLE_ID, QuarantineReport, later_duplicates
from resmm.console import progress_bar, say
from resmm.sources.shards import ShardError, open_filesystem

QUARANTINE_REASON = "quarantine_reason"


@dataclass
class _Verdicts:
    """Driver-side sums of the inspected batches: 20 bytes per clean row (id digest, row hash, group)."""

    modalities: tuple[str, ...]
    rows_by_path: Counter = field(default_factory=Counter)
    groups: dict = field(default_factory=dict)  # (is_val, label, pattern) -> group code
    id_digests: list = field(default_factory=list)
    row_keys: list = field(default_factory=list)
    group_codes: list = field(default_factory=list)
    quarantined: dict = field(default_factory=dict)  # row_hash -> reason
    report: QuarantineReport = field(default_factory=QuarantineReport)
    faults: frozenset = field(default_factory=modality_faults)  # events that marked a modality missing

    def add(self, batch: pa.Table) -> None:
        self.rows_by_path.update(batch.column("path").to_pylist())
        reasons = batch.column("reason").to_pylist()
        row_hashes = batch.column(ROW_HASH).to_numpy()
        clean = np.array([r is None for r in reasons], dtype=bool)
        for row_hash, reason in zip(row_hashes[~clean].tolist(), (r for r in reasons if r is not None)):
            self.quarantined[row_hash] = reason
            self.report.rows[reason] += 1
        for cell, ok in zip(batch.column("events").to_pylist(), clean):
            for event in (cell.split(",") if cell and ok else ()):
                (self.report.modalities_marked_missing if event in self.faults
                 else self.report.input_limits)[event] += 1
        keys = zip(batch.column("is_val").to_pylist(), batch.column("label").to_pylist(),
                   batch.column("pattern").to_pylist())
        codes = [self.groups.setdefault(key, len(self.groups)) for key, ok in zip(keys, clean) if ok]
        self.id_digests.append(batch.column("id_hash").to_numpy()[clean])
        self.row_keys.append(row_hashes[clean])
        self.group_codes.append(np.asarray(codes, dtype=np.int32))

    def quarantine_duplicates(self) -> np.ndarray:
        """Mark every copy of an id but one as a duplicate; returns the group codes of the rows kept."""
        ids = np.concatenate(self.id_digests) if self.id_digests else np.zeros(0, np.uint64)
        keys = np.concatenate(self.row_keys) if self.row_keys else np.zeros(0, np.uint64)
        codes = np.concatenate(self.group_codes) if self.group_codes else np.zeros(0, np.int32)
        repeated = later_duplicates(ids, keys)
        for row_hash in keys[repeated].tolist():
            self.quarantined[row_hash] = DUPLICATE_SAMPLE_ID
        if repeated.any():
            self.report.rows[DUPLICATE_SAMPLE_ID] += int(repeated.sum())
        return codes[~repeated]

    def profile(self, codes: np.ndarray, validation_side: bool) -> DataProfile:
        counts = np.bincount(codes, minlength=len(self.groups))
        classes, presence, by_class, rows = Counter(), Counter(), {}, 0
        for (is_val, label, pattern), code in self.groups.items():
            n = int(counts[code])
            if is_val != validation_side or n == 0:
                continue
            rows += n
            classes[label] += n
            for bit, modality in enumerate(self.modalities):
                if pattern >> bit & 1:
                    presence[modality] += n
                    by_class.setdefault(label, Counter())[modality] += n
        return DataProfile(
            rows=rows, class_counts=dict(classes), presence={m: presence[m] for m in self.modalities},
            presence_by_class={k: dict(v) for k, v in by_class.items()},
        )


@dataclass
class Validation:
    """The validation stage's outcome for one source."""

    source: Source  # without the files found unreadable
    train_profile: DataProfile  # the clean rows of the training side (every clean row when not split)
    val_profile: DataProfile | None  # the clean rows of the validation side when split
    quarantined: dict  # row_hash -> reason
    report: QuarantineReport
    cache: CacheStats | None = None  # what the cache fill did (None: data.cache=off)
    entries: tuple[str, ...] | None = None  # each shard's cache entry, as the cache's filesystem names it

    @property
    def quarantined_row_hashes(self) -> np.ndarray:
        return np.sort(np.fromiter(self.quarantined, dtype=np.uint64, count=len(self.quarantined)))


def probe_file(row: dict, *, columns: list[str]) -> dict:
    """Ray Data stage: read one file's columns end to end; the reason it fails, or '' when it reads."""
    fs, path = open_filesystem(row["url"])
    try:
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            for _ in parquet.iter_batches(columns=[c for c in columns if c in parquet.schema_arrow.names]):
                pass
    except (OSError, ValueError, pa.ArrowException) as exc:
        return {"url": row["url"], "reason": f"unreadable Parquet data: {exc}"}
    return {"url": row["url"], "reason": ""}


def unreadable_files(source: Source, columns: list[str]) -> list[dict]:
    """Files that fail to read past their footer (corrupt pages), found one file per task."""
    probes = ray.data.from_items([{"url": s.url} for s in source.shards]).map(
        probe_file, fn_kwargs={"columns": columns}
    )
    return [{"path": r["url"], "reason": r["reason"]} for r in probes.take_all() if r["reason"]]


def _inspect(source: Source, spec: PreprocessSpec, rules: Rules, batch_rows: int, name: str,
             target: CacheTarget | NoCache) -> tuple[_Verdicts, CacheStats]:
    """One task per shard decodes it in full (fill_entries): every row's verdict, and the shard's cache entry
    when `target` keeps one."""
    inspected = fill_entries(source.shards, spec, rules, target, batch_rows)
    verdicts, stats, seen = _Verdicts(spec.modalities), CacheStats(location=target.url), set()
    with progress_bar(source.num_rows, f"validate {name}") as bar:
        for batch in inspected.iter_batches(batch_format="pyarrow", batch_size=None):
            verdicts.add(_count_cache(batch, stats, seen))
            bar.update(batch.num_rows)
    return verdicts, stats


def _count_cache(batch: pa.Table, stats: CacheStats, seen: set) -> pa.Table:
    """Add a filled shard's cache state to `stats` (once per shard) and drop the two cache columns."""
    paths = batch.column("path").to_pylist()
    states = batch.column(CACHE_STATE).to_pylist()
    sizes = batch.column(CACHE_BYTES).to_pylist()
    rows = Counter(paths)
    for path, state, size in zip(paths, states, sizes):
        if path not in seen:
            seen.add(path)
            stats.add(state, rows[path], size)
    return batch.drop_columns([CACHE_STATE, CACHE_BYTES])


def validate_source(source: Source, spec: PreprocessSpec, rules: Rules, *, batch_rows: int = 256,
                    progress=say, name: str = "data", cache: CacheTarget | None = None) -> Validation:
    """Run the validation stage over every row of `source`; see resmm.sources.quarantine for the policy per fault.
    `name` labels its progress bar; `cache`: fill (or reuse) the decoded-feature cache on the way (None:
    data.cache=off, the same pass storing nothing)."""
    check_group_column(source.shards, rules.group_column)
    columns, target = rules.columns(spec), cache or NoCache()
    try:
        verdicts, stats = _inspect(source, spec, rules, batch_rows, name, target)
    except (ray.exceptions.RayError, OSError, pa.ArrowException) as exc:
        # A file whose footer reads but whose pages do not fails its whole read task, good files and all:
        # find it file by file, set it aside, and read the rest again.
        bad = unreadable_files(source, columns)
        if not bad:
            raise
        progress(f"[resmm] {len(bad)} file(s) unreadable past their footer; skipping them: "
                 + ", ".join(b["path"] for b in bad))
        source = without_files(source, bad)
        if not source.shards:
            raise ShardError(f"data path '{source.url}': no readable Parquet file left") from exc
        verdicts, stats = _inspect(source, spec, rules, batch_rows, name, target)
    for shard in source.shards:  # the reader must have delivered every row each footer promised
        read = verdicts.rows_by_path.get(shard.path, 0)
        if read != shard.num_rows:
            raise ShardError(f"{shard.url}: read {read} rows but its footer says {shard.num_rows}; "
                             "was the file rewritten during the run?")
    kept_codes = verdicts.quarantine_duplicates()
    verdicts.report.files = list(source.unreadable)
    split = rules.val_fraction is not None
    return Validation(
        source=source,
        train_profile=verdicts.profile(kept_codes, validation_side=False),
        val_profile=verdicts.profile(kept_codes, validation_side=True) if split else None,
        quarantined=verdicts.quarantined,
        report=verdicts.report,
        cache=target.kept(stats),
        entries=target.entries(source.shards, spec, rules.group_column),
    )


def keep_rows(table: pa.Table, *, row_hashes: np.ndarray) -> pa.Table:
    """map_batches stage: only the given rows (by Ray's row_hash)."""
    return table.filter(pa.array(np.isin(table.column(ROW_HASH).to_numpy(), row_hashes)))


def write_quarantine(validation: Validation, columns: list[str], destination: str) -> int:
    """Stream the quarantined rows (their contract columns, source path, row hash and reason) into one
    Parquet file at `destination` (any fsspec URL); returns the rows written. Memory stays one batch."""
    if not validation.quarantined:
        return 0
    rows = read_source(validation.source, columns, row_hashes=True, paths=True).map_batches(
        keep_rows, batch_format="pyarrow", fn_kwargs={"row_hashes": validation.quarantined_row_hashes}
    )
    fs, path = open_filesystem(destination)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    written, writer = 0, None
    with fs.open(path, "wb") as handle:
        for batch in rows.iter_batches(batch_format="pyarrow", batch_size=None):
            reasons = [validation.quarantined[h] for h in batch.column(ROW_HASH).to_pylist()]
            batch = batch.append_column(QUARANTINE_REASON, pa.array(reasons, pa.string()))
            if writer is None:
                writer = pq.ParquetWriter(handle, batch.schema)
            writer.write_table(batch.cast(writer.schema))
            written += batch.num_rows
        if writer is not None:
            writer.close()
    return written

