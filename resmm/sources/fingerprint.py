"""The data fingerprint: file list, sizes, versions (ETag or mtime) and footer row counts, hashed.

Two fingerprints are equal exactly when no shard was added, removed or rewritten; retraining skips when the
champion was trained on the same fingerprint.
"""
from __future__ import annotations

import hashlib
import json


def data_fingerprint(shards) -> dict:
    files = [
        {"path": s.url, "size_bytes": s.size_bytes, "version": s.version, "rows": s.num_rows}
        for s in sorted(shards, key=lambda s: s.url)
    ]
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "files": len(files), "rows": sum(f["rows"] for f in files), "shards": files}
