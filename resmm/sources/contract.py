"""The Parquet contract: which columns a shard carries, their types, and clear errors naming file and column."""
from __future__ import annotations

import pyarrow as pa

from resmm.modalities import MODALITIES
from resmm.modalities.base import string_column

_STRING = string_column().accepts
_LABEL = (lambda t: _STRING(t) or pa.types.is_integer(t) or pa.types.is_null(t))
_GROUP = (lambda t: _STRING(t) or pa.types.is_null(t))
GROUP_COLUMN = "group_id"  # data.group_column's default: optional, a shard may leave it out
_GROUP_DESCRIPTION = "string (the row's group: a group's rows share one side of the split; null = by sample_id)"
# column -> (accepted arrow type predicate, human description); each modality's column comes from its record.
_ID_AND_LABEL = {
    "sample_id": (_STRING, "string (unique row id)"),
    "label": (_LABEL, "string or integer class (null = unlabeled)"),
    GROUP_COLUMN: (_GROUP, _GROUP_DESCRIPTION),
}


def contract_columns() -> dict:
    """Every contract column: the id, the label, and one per registered modality."""
    return {**_ID_AND_LABEL, **{m: (r.column.accepts, r.column.description) for m, r in MODALITIES.items()}}


class ContractError(ValueError):
    """A shard breaks the Parquet contract; the message names the file and the column."""


def required_columns(modalities, labelled: bool) -> list[str]:
    """Columns a shard must carry: the id, the label for training splits, and every configured modality."""
    return ["sample_id"] + (["label"] if labelled else []) + list(modalities)


def check_schema(schema: pa.Schema, path: str, modalities, labelled: bool = True) -> None:
    """Raise ContractError for the first missing or mistyped contract column; extra columns are ignored."""
    columns = contract_columns()
    for column in required_columns(modalities, labelled):
        if column not in schema.names:
            raise ContractError(
                f"{path}: missing required column '{column}' (expected {columns[column][1]})"
            )
    for column, (accepts, description) in columns.items():
        if column in schema.names and not accepts(schema.field(column).type):
            raise ContractError(
                f"{path}: column '{column}' has type {schema.field(column).type}, expected {description}"
            )


def check_group_column(shards, group_column: str | None) -> None:
    """Raise ContractError unless the group column is in every training shard, as a string column; the default
    `group_id` may instead be in none (the split is then by sample_id, as without groups)."""
    if group_column is None:
        return
    missing = [s.url for s in shards if group_column not in s.schema.names]
    if missing and (group_column != GROUP_COLUMN or len(missing) < len(shards)):
        # A shard without the column would split its rows by sample_id, apart from their groups elsewhere.
        named = "named by data.group_column" if group_column != GROUP_COLUMN else "that other shards carry"
        raise ContractError(f"{missing[0]}: missing column '{group_column}' {named} (expected {_GROUP_DESCRIPTION})")
    for shard in shards:
        if group_column in shard.schema.names and not _GROUP(shard.schema.field(group_column).type):
            raise ContractError(f"{shard.url}: column '{group_column}' has type "
                                f"{shard.schema.field(group_column).type}, expected {_GROUP_DESCRIPTION}")


def label_kind(schema: pa.Schema) -> str:
    """'string', 'integer' or 'null': shards must agree so that class names are unambiguous."""
    if "label" not in schema.names:
        return "null"
    arrow_type = schema.field("label").type
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_null(arrow_type):
        return "null"
    return "string"


def class_order(names) -> list[str]:
    """Class names sorted numerically when every one is an integer, else alphabetically."""
    names = list(names)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def resolve_classes(configured: list[str] | None, train_counts: dict) -> list[str]:
    """The class vocabulary: the configured list, or the sorted labels seen (numerically when all are integers)."""
    if configured:
        return list(configured)
    names = [n for n in train_counts if n is not None]
    if len(names) < 2:
        raise ContractError(f"training data holds {len(names)} distinct label(s); at least 2 classes are needed")
    return class_order(names)
