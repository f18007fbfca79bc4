"""Row faults and the quarantine report: which rows and files a run refused, why, and what it counted.

Policy, per fault (documented in docs/data-contract.md):
- an unreadable Parquet file (bad footer, truncated, corrupt pages): the file is skipped, every other file kept;
- a null or duplicate `sample_id`, a null label in a labelled split, a label outside `data.classes`:
  the row is quarantined (written with its reason to the run's quarantine Parquet file);
- undecodable, oversized, empty or NaN image/audio bytes: the row is kept with that modality marked missing;
- audio longer than `data.audio.max_seconds`, text longer than `data.text.max_chars`: cut and kept.
Everything is counted.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

NULL_SAMPLE_ID = "null_sample_id"
DUPLICATE_SAMPLE_ID = "duplicate_sample_id"
NULL_LABEL = "null_label"
UNKNOWN_LABEL = "unknown_label"


def row_faults(sample_ids: list, labels: list, classes: set | None, null_label_is_fault: bool) -> list:
    """Per row: the fault that quarantines it (checked in this order), or None.

    labels: class names (None = null). classes: the configured vocabulary, or None when it is derived.
    """
    reasons: list = []
    for sample_id, label in zip(sample_ids, labels):
        if sample_id is None or sample_id == "":
            reasons.append(NULL_SAMPLE_ID)
        elif label is None:
            reasons.append(NULL_LABEL if null_label_is_fault else None)
        elif classes is not None and label not in classes:
            reasons.append(UNKNOWN_LABEL)
        else:
            reasons.append(None)
    return reasons


def id_hashes(sample_ids: list) -> np.ndarray:
    """(N,) uint64 digests of sample ids for duplicate detection (blake2b: stable across processes).

    The driver keeps 8 bytes per row instead of the ids themselves; two different ids share a digest with
    probability about n^2 / 2^65 (3e-6 at ten million rows), and such a pair would be quarantined as a
    duplicate, visibly, with both ids in the quarantine file.
    """
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(s).encode("utf-8"), digest_size=8).digest(), "little")
         for s in sample_ids),
        dtype=np.uint64, count=len(sample_ids),
    )


def later_duplicates(ids: np.ndarray, row_keys: np.ndarray) -> np.ndarray:
    """(N,) bool: rows whose id already occurs in another row. The copy kept is the one with the smallest
    row key, so the choice is the same on every run over the same files."""
    order = np.lexsort((row_keys, ids))
    repeated = np.zeros(len(ids), dtype=bool)
    repeated[order[1:]] = ids[order[1:]] == ids[order[:-1]]
    return repeated


@dataclass
class QuarantineReport:
    """What the validation stage refused or repaired, as reported in the summary JSON and MLflow."""

    files: list = field(default_factory=list)  # [{"path", "reason"}]
    rows: Counter = field(default_factory=Counter)  # row fault -> quarantined rows
    modalities_marked_missing: Counter = field(default_factory=Counter)  # modality fault -> rows
    input_limits: Counter = field(default_factory=Counter)  # limit -> rows cut to it
    location: str | None = None  # Parquet file holding the quarantined rows with their reasons

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())

    def merge(self, other: "QuarantineReport") -> None:
        self.files += other.files
        self.rows.update(other.rows)
        self.modalities_marked_missing.update(other.modalities_marked_missing)
        self.input_limits.update(other.input_limits)

    def as_summary(self) -> dict:
        return {
            "files": list(self.files),
            "rows": dict(sorted(self.rows.items())),
            "rows_total": self.rows_total,
            "modalities_marked_missing": dict(sorted(self.modalities_marked_missing.items())),
            "input_limits": dict(sorted(self.input_limits.items())),
            "location": self.location,
        }
