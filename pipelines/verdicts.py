"""Per-row verdicts of the validation stage: what decoding found in a row, judged by the run's rules."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines.ingest import ROW_HASH
from resmm.data.cells import column_cells, label_name
from resmm.modalities.compact import decode_compact
from resmm.modalities.spec import PreprocessSpec
from resmm.data.split import in_validation
from resmm.sources.quarantine import id_hashes, row_faults


@dataclass(frozen=True)
class Rules:
    """What counts as a fault in one source."""

    labelled: bool  # the split must carry labels (training, evaluation)
    null_label_is_fault: bool  # data.unlabeled_rows == "quarantine"
    classes: tuple[str, ...] | None  # data.classes when configured
    val_fraction: float | None  # hash-split the rows into train/val sides (None: one side)
    group_column: str | None = None  # data.group_column: a group's rows share a side (None: split by sample_id)

    def columns(self, spec: PreprocessSpec) -> list[str]:
        return source_columns(spec, self.group_column)


def source_columns(spec: PreprocessSpec, group_column: str | None) -> list[str]:
    """The source columns a decode reads: the id, the label, every modality and the group column."""
    return ["sample_id", "label", *spec.modalities, *([group_column] if group_column else [])]


def decode_modalities(table: pa.Table, spec: PreprocessSpec):
    """Decode every modality of a contract batch into its compact form (resmm.modalities.compact.decode_compact):
    (values per modality; presence pattern, bit i = modality i; per row the comma-joined faults and limits,
    or None)."""
    rows, names = table.num_rows, table.column_names
    values, pattern = {}, np.zeros(rows, dtype=np.int8)
    events: list[list[str]] = [[] for _ in range(rows)]
    for bit, modality in enumerate(spec.modalities):
        cells = column_cells(table.column(modality) if modality in names else None, rows)
        decoded = decode_compact(modality, cells, spec.settings[modality])
        values[modality] = decoded.values
        pattern |= decoded.present.astype(np.int8) << bit
        for i, event in enumerate(decoded.events):
            if event:
                events[i].append(event)
    return values, pattern, [",".join(e) if e else None for e in events]


def row_labels(table: pa.Table) -> list:
    """The label column as class names (None: unlabeled or no label column)."""
    column = table.column("label") if "label" in table.column_names else None
    return [label_name(v) for v in column_cells(column, table.num_rows)]


def verdict_table(row_hashes, paths, sample_ids: list, labels: list, buckets: np.ndarray, pattern: np.ndarray,
                  events: list, rules: Rules) -> pa.Table:
    """The verdict rows the driver sums (_Verdicts.add), from what decoding found (pattern, events) and the
    run's rules (row faults, split side of each row's split bucket), which are judged afresh every run.

    Columns: row_hash, path, id_hash, is_val, label, pattern (bit i = modality i present after decoding),
    reason (row fault or null), events (comma-joined modality faults and limits, or null).
    """
    classes = set(rules.classes) if rules.classes else None
    reasons = row_faults(sample_ids, labels, classes, rules.labelled and rules.null_label_is_fault)
    is_val = (in_validation(buckets, rules.val_fraction) if rules.val_fraction is not None
              else np.zeros(len(sample_ids), dtype=bool))
    return pa.table({
        ROW_HASH: pa.array(row_hashes, pa.uint64()),
        "path": pa.array(paths, pa.string()),
        "id_hash": pa.array(id_hashes(sample_ids), pa.uint64()),
        "is_val": pa.array(is_val),
        "label": pa.array(labels, pa.string()),
        "pattern": pa.array(pattern, pa.int8()),
        "reason": pa.array(reasons, pa.string()),
        "events": pa.array(events, pa.string()),
    })
