"""Shard discovery through fsspec: a directory, glob or URL -> the Parquet files behind it and their footers."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class ShardError(ValueError):
    """The data location holds no readable Parquet shards."""


@dataclass(frozen=True)
class Shard:
    path: str  # path as the filesystem names it (no protocol)
    url: str  # path with protocol, for messages and lineage
    size_bytes: int
    num_rows: int
    schema: pa.Schema
    version: str  # ETag on object stores, else the modification time: changes when the file is rewritten


def open_filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec filesystem and protocol-less path for a URL; credentials come from the environment."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def arrow_filesystem(fs: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    """The pyarrow view of an fsspec filesystem, which Ray Data's Parquet reader can pickle to its tasks."""
    if "file" in _protocols(fs):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _with_protocol(fs, path: str) -> str:
    protocol = _protocols(fs)[0]
    return path if protocol == "file" else f"{protocol}://{path}"


def list_parquet_files(url: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """All `.parquet` files under a directory, matching a glob, or the single file a URL names (sorted)."""
    fs, path = open_filesystem(url)
    if any(ch in path for ch in "*?["):
        files = fs.glob(path)
    elif fs.isdir(path):
        files = fs.find(path)
    elif fs.exists(path):
        files = [path]
    else:
        raise ShardError(f"data path '{url}' does not exist")
    files = sorted(f for f in files if f.endswith(".parquet") and not fs.isdir(f))
    if not files:
        raise ShardError(f"data path '{url}' holds no .parquet files")
    return fs, files


def read_footer(fs, path: str) -> Shard:
    """Read one shard's footer (schema, row count) without touching its data pages."""
    info = fs.info(path)
    with fs.open(path, "rb") as handle:
        metadata = pq.read_metadata(handle)
    version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
    return Shard(
        path=path,
        url=_with_protocol(fs, path),
        size_bytes=int(info.get("size") or 0),
        num_rows=metadata.num_rows,
        schema=metadata.schema.to_arrow_schema(),
        version=str(version).strip('"'),
    )


def read_footers(fs, paths: list[str], threads: int = 16) -> tuple[list[Shard], list[dict]]:
    """Footers of many shards in parallel (object stores answer one small range read per file).

    Returns (readable shards, [{"path", "reason"}] for files whose footer cannot be read: truncated, not
    Parquet, corrupt). Ray's reader packs several files into one read task, so a bad file must be found
    here, file by file, or it could take good files down with it.
    """
    def attempt(path: str):
        try:
            return read_footer(fs, path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            return {"path": _with_protocol(fs, path), "reason": f"unreadable Parquet footer: {exc}"}

    with ThreadPoolExecutor(max_workers=min(threads, max(1, len(paths)))) as pool:
        results = list(pool.map(attempt, paths))
    return [r for r in results if isinstance(r, Shard)], [r for r in results if not isinstance(r, Shard)]
