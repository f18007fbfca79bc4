"""The decoded-feature cache: one Parquet entry per source shard holding its rows decoded and compacted, so that
later epochs and retrains read features instead of re-decoding bytes (FFCV's pre-decoded files, tf.data's
`snapshot`, HF `datasets`' fingerprinted map cache, applied per shard).

An entry's name carries a key over everything its contents depend on: the shard's identity (URL, size, ETag or
mtime, footer rows), the preprocessing settings of each modality read, the group column of the split buckets,
and the versions of the decode code and of the libraries it calls. A changed shard, setting or decoder therefore
misses and is decoded again; nothing is ever updated in place. Entries are written to a temporary name and
renamed, with Parquet page checksums, so a crash leaves no half-written entry and a corrupt one is detected when
read (see `read_verified`).

Columns of an entry (one row per source row, in source order):
    row_hash      uint64   Ray's row hash of the source row (the quarantine's row identity)
    sample_id     string   as in the source (row faults are judged on it each run)
    label         string   the class name, null when unlabeled
    split_bucket  uint16   crc32(group, else sample_id) % 10000, the split's bucket (resmm.data.split)
    pattern       int8     bit i set = modality i of the entry present after decoding
    events        string   comma-joined decode faults and input limits of the row, or null
    <modality>    fixed-size binary: the row's compact values (image uint8 C×H×W, tokens uint16, log-mel fp16)

What each modality stores and how it is widened back to model inputs (on the training worker, on its device)
is the modality's own business (resmm/modalities/compact.py); this module takes the compact arrays as given.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CACHE_FORMAT = 1
_LIBRARIES = ("numpy", "pillow", "soundfile", "scipy", "pyarrow", "tokenizers")  # tokenizers: hf text tokenizers
_META_KEY = b"resmm.cache"


def decode_versions(sources: Iterable[Path]) -> dict:
    """The versions a decoded value depends on: this format, a digest of the code in `sources` (the files whose
    code shapes a stored value, resmm.modalities.compact.decode_sources), the libraries."""
    code = hashlib.sha256()
    for path in sorted({Path(p).resolve() for p in sources}):
        code.update(path.read_bytes())
    versions = {"format": CACHE_FORMAT, "code": code.hexdigest()[:16]}
    for library in _LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = "absent"
    import soundfile  # libsndfile is a C library: its own version, beside the binding's

    versions["libsndfile"] = soundfile.__libsndfile_version__
    return versions


def entry_key(shard, spec, versions: dict, group_column: str | None) -> str:
    """sha256 over the shard's identity, the preprocessing of every modality read, the group column that keyed
    the split buckets, and the decode versions."""
    identity = {
        "shard": {"url": shard.url, "size": shard.size_bytes, "version": shard.version, "rows": shard.num_rows},
        "modalities": list(spec.modalities),
        "settings": {m: spec.settings[m].model_dump(mode="json") for m in spec.modalities},
        "group_column": group_column,
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def entry_path(root: str, shard, key: str) -> str:
    """Where a shard's entry lives under the cache root (a protocol-less path of the root's filesystem)."""
    stem = shard.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".parquet")
    return f"{root.rstrip('/')}/{stem}-{key[:20]}.parquet"


@dataclass(frozen=True)
class Layout:
    """How each modality's values are stored: dtype and per-row shape of the compact array
    (resmm.modalities.compact.layout_of)."""

    shapes: dict  # modality -> (shape tuple, numpy dtype name)

    def row_bytes(self, modality: str) -> int:
        shape, dtype = self.shapes[modality]
        return int(np.prod(shape)) * np.dtype(dtype).itemsize


def entry_part(row_hashes: np.ndarray, sample_ids: list, labels: list, buckets: np.ndarray, pattern: np.ndarray,
               events: list, compact: dict, layout: Layout) -> pa.Table:
    """One slice of an entry (the columns in the module docstring) from each modality's compact values."""
    columns = {
        "row_hash": pa.array(row_hashes, pa.uint64()),
        "sample_id": pa.array([None if s is None else str(s) for s in sample_ids], pa.string()),
        "label": pa.array(labels, pa.string()),
        "split_bucket": pa.array(buckets, pa.uint16()),
        "pattern": pa.array(pattern, pa.int8()),
        "events": pa.array(events, pa.string()),
    }
    for m, values in compact.items():
        columns[m] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(layout.row_bytes(m)), len(values),
                                                          [None, pa.py_buffer(values.tobytes())])
    return pa.table(columns)


def column_array(column, shape: tuple, dtype: str) -> np.ndarray:
    """A fixed-size binary column -> (N, *shape) array of `dtype`, without a copy where the chunk allows."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = int(np.prod(shape)) * np.dtype(dtype).itemsize
    data = np.frombuffer(array.buffers()[1], dtype=np.uint8, count=len(array) * width,
                         offset=array.offset * width)
    return data.view(dtype).reshape(len(array), *shape)


def write_entry(fs, path: str, parts: Iterable[pa.Table], key: str, rows: int, layout: Layout) -> int:
    """Write the parts to a temporary file beside `path`, then rename it into place; returns the bytes written.

    Two jobs filling one entry each write their own temporary file; the last rename wins, and both files hold
    the same rows, so either is right. A part count that disagrees with `rows` aborts before the rename.
    """
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    written, writer = 0, None
    # No timestamp: the same rows always make the same bytes, so concurrent fills write identical files.
    meta = json.dumps({"key": key, "rows": rows,
                       "layout": {m: [list(s), d] for m, (s, d) in layout.shapes.items()}}).encode()
    try:
        with fs.open(temporary, "wb") as handle:
            for part in parts:
                if writer is None:
                    schema = part.schema.with_metadata({_META_KEY: meta})
                    writer = pq.ParquetWriter(handle, schema, write_page_checksum=True, compression="zstd")
                writer.write_table(part.replace_schema_metadata({_META_KEY: meta}))
                written += part.num_rows
            if writer is not None:
                writer.close()
        if written != rows:
            raise ValueError(f"cache entry {path}: wrote {written} rows, the shard has {rows}")
        fs.mv(temporary, path)
    finally:
        if fs.exists(temporary):
            fs.rm(temporary)
    return int(fs.info(path).get("size") or 0)


def read_verified(fs, path: str, key: str, rows: int, columns: list[str] = ()) -> tuple[str | None, pa.Table | None]:
    """(None, the entry's `columns`) when the entry at `path` is whole and belongs to `key`; else (why it cannot
    be used, None).

    Whole means: the footer reads, its metadata names this key and row count, the footer holds that many rows,
    and every data page passes its CRC (written with `write_page_checksum`), so a truncated or bit-flipped
    entry is found before a row of it is fed. Checking the CRCs reads every page once; the requested columns
    come from that same read.
    """
    if not fs.exists(path):
        return "missing", None
    try:
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle, page_checksum_verification=True)
            meta = json.loads((parquet.schema_arrow.metadata or {}).get(_META_KEY, b"{}"))
            if meta.get("key") != key:
                return "key mismatch", None
            if parquet.metadata.num_rows != rows or meta.get("rows") != rows:
                return f"row count {parquet.metadata.num_rows}, expected {rows}", None
            groups = [parquet.read_row_group(group).select(list(columns)) for group in range(parquet.num_row_groups)]
    except (OSError, ValueError, pa.ArrowException, json.JSONDecodeError) as exc:
        return f"unreadable: {str(exc).splitlines()[0][:200]}", None
    return None, pa.concat_tables(groups) if groups else None


@dataclass
class CacheStats:
    """What the cache did in one run: rows decoded from source bytes, rows served from entries, the entries."""

    location: str
    decoded_rows: int = 0
    cached_rows: int = 0
    bytes: int = 0
    entries_built: int = 0
    entries_reused: int = 0
    entries_rebuilt: int = 0  # found corrupt, truncated or foreign, and decoded again

    def add(self, state: str, rows: int, size: int) -> None:
        self.bytes += size
        if state == "reused":
            self.cached_rows += rows
            self.entries_reused += 1
            return
        self.decoded_rows += rows
        self.entries_built += 1
        self.entries_rebuilt += state == "rebuilt"

    def merge(self, other: "CacheStats") -> None:
        for name in ("decoded_rows", "cached_rows", "bytes", "entries_built", "entries_reused", "entries_rebuilt"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_summary(self) -> dict:
        return {"decoded_rows": self.decoded_rows, "cached_rows": self.cached_rows, "location": self.location,
                "bytes": self.bytes, "entries": {"built": self.entries_built, "reused": self.entries_reused,
                                                 "rebuilt_corrupt": self.entries_rebuilt}}


def cache_url(cfg) -> str:
    """The run's cache root: `data.cache_path`, else `<train.storage_path>/feature-cache` (a local path made
    absolute, as Ray Train's storage is)."""
    if cfg.data.cache_path:
        return cfg.data.cache_path.rstrip("/")
    storage = cfg.train.storage_path
    return f"{storage if '://' in storage else Path(storage).expanduser().resolve()}/feature-cache"


def list_entries(fs, root: str) -> list[dict]:
    """Every entry under a cache root: path, bytes, modification time (seconds since the epoch)."""
    if not fs.exists(root):
        return []
    entries = []
    for path, info in fs.find(root, detail=True).items():
        if path.endswith(".parquet") or ".parquet.tmp-" in path:
            mtime = info.get("mtime") or info.get("LastModified") or 0
            entries.append({"path": path, "bytes": int(info.get("size") or 0),
                            "mtime": mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)})
    return sorted(entries, key=lambda e: e["path"])


def prune_entries(fs, root: str, older_than_days: float, now: float | None = None) -> list[dict]:
    """Delete the entries (and stray temporary files) written more than `older_than_days` ago; returns them.
    An entry still in use is simply decoded again by the next run that needs it."""
    cutoff = (now if now is not None else time.time()) - older_than_days * 86400
    old = [e for e in list_entries(fs, root) if e["mtime"] < cutoff]
    for entry in old:
        fs.rm(entry["path"])
    return old
