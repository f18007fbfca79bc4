"""The Parquet contract: which columns a shard carries, their types, and clear errors naming file and column."""
from __future__ import annotations

import pyarrow as pa

# column -> (accepted arrow type predicate, human description)
_STRING = (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or _is_dict_of(t, pa.types.is_string))
_BINARY = (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t))
_LABEL = (lambda t: _STRING(t) or pa.types.is_integer(t) or pa.types.is_null(t))

COLUMNS = {
    "sample_id": (_STRING, "string (unique row id)"),
    "label": (_LABEL, "string or integer class (null = unlabeled)"),
    "image": (_BINARY, "binary (encoded PNG/JPEG/WebP bytes)"),
    "text": (_STRING, "string"),
    "audio": (_BINARY, "binary (encoded WAV/FLAC/OGG bytes)"),
}


class ContractError(ValueError):
    """A shard breaks the Parquet contract; the message names the file and the column."""


def _is_dict_of(arrow_type: pa.DataType, predicate) -> bool:
    return pa.types.is_dictionary(arrow_type) and predicate(arrow_type.value_type)


def required_columns(modalities, labelled: bool) -> list[str]:
    """Columns a shard must carry: the id, the label for training splits, and every configured modality."""
    return ["sample_id"] + (["label"] if labelled else []) + list(modalities)


def check_schema(schema: pa.Schema, path: str, modalities, labelled: bool = True) -> None:
    """Raise ContractError for the first missing or mistyped contract column; extra columns are ignored."""
    for column in required_columns(modalities, labelled):
        if column not in schema.names:
            raise ContractError(
                f"{path}: missing required column '{column}' (expected {COLUMNS[column][1]})"
            )
    for column, (accepts, description) in COLUMNS.items():
        if column in schema.names and not accepts(schema.field(column).type):
            raise ContractError(
                f"{path}: column '{column}' has type {schema.field(column).type}, expected {description}"
            )


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
