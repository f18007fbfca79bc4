"""Scanning the shards behind a data URL (every footer read and the contract checked before any data is read) and
streaming their rows with Ray Data. The decoding streams of training live in pipelines/feature_cache.py."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass

import ray.data

from resmm.sources.contract import ContractError, check_schema, label_kind
from resmm.sources.shards import Shard, ShardError, arrow_filesystem, list_parquet_files, read_footers

ROW_HASH = "row_hash"  # the column Ray's read_parquet(include_row_hash=True) adds

@dataclass(frozen=True)
class Source:
    """A validated set of shards behind one data URL."""

    url: str
    filesystem: object  # fsspec filesystem
    shards: tuple[Shard, ...]  # the readable shards
    unreadable: tuple[dict, ...] = ()  # [{"path", "reason"}]: skipped files (see resmm.sources.quarantine)

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s in self.shards)


def scan_source(url: str, modalities, labelled: bool = True) -> Source:
    """List the shards behind `url`, read every footer, and check the contract before any data is read.

    Files with an unreadable footer are set aside in `Source.unreadable`; the caller decides whether that is
    a quarantine (training) or an error (prediction, which owes a row for every input row).
    """
    fs, paths = list_parquet_files(url)
    shards, unreadable = read_footers(fs, paths)
    if not shards:
        raise ShardError(f"data path '{url}': none of its {len(paths)} Parquet file(s) is readable, e.g. "
                         f"{unreadable[0]['path']}: {unreadable[0]['reason']}")
    kinds: dict[str, str] = {}
    for shard in shards:
        check_schema(shard.schema, shard.url, modalities, labelled)
        kinds.setdefault(label_kind(shard.schema), shard.url)
    if "integer" in kinds and "string" in kinds:
        raise ContractError(
            f"column 'label' is integer in {kinds['integer']} but string in {kinds['string']}; "
            "use one label type across shards"
        )
    return Source(url=url, filesystem=fs, shards=tuple(shards), unreadable=tuple(unreadable))


def without_files(source: Source, bad: list[dict]) -> Source:
    """The source minus files found unreadable past their footer (corrupt data pages)."""
    bad_paths = {b["path"] for b in bad}
    return dataclasses.replace(
        source, shards=tuple(s for s in source.shards if s.url not in bad_paths),
        unreadable=source.unreadable + tuple(bad),
    )


def read_source(source: Source, columns: list[str] | None, *, row_hashes: bool = False,
                paths: bool = False) -> ray.data.Dataset:
    """Stream the readable shards, projecting the given contract columns (None = every column).

    row_hashes adds Ray's `row_hash` (a digest of file path and row position: the same row gets the same
    hash on every read), which is how quarantined rows are recognised and dropped from the training stream.
    """
    present = None if columns is None else [c for c in columns if all(c in s.schema.names for s in source.shards)]
    with file_list_reader(ray.data.DataContext.get_current()):
        return ray.data.read_parquet(
            [s.path for s in source.shards],
            filesystem=arrow_filesystem(source.filesystem),
            columns=present,
            include_row_hash=row_hashes,
            include_paths=paths,
            # One read task per file: Ray's default splits every read task's output (SplitBlocks), and a split
            # read sits backpressured on a CPU slot while the decode stage waits for one (benchmarks/results/).
            override_num_blocks=len(source.shards),
        )


@contextlib.contextmanager
def file_list_reader(context):
    """Plan the read with Ray's file-list Parquet reader (DataContext.use_datasource_v2 = False) rather than
    Ray 2.60's default V2 reader, unless the user set RAY_DATA_USE_DATASOURCE_V2 themselves.

    scan_source has already read every footer, so V2's listing stage is pure overhead here: every epoch it starts
    a pool of footer-reading actors to read them again, and it ignores `override_num_blocks`.
    """
    if "RAY_DATA_USE_DATASOURCE_V2" in os.environ:
        yield
        return
    saved, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        yield
    finally:
        context.use_datasource_v2 = saved
