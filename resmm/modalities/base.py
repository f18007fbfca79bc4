"""The modality record: everything resmm knows about one kind of input, so that the rest of the code iterates
a registry instead of naming modalities (open_clip's tower configs, TorchMultimodal's encoder dicts)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from resmm.data.decoded import Decoded
from resmm.data.lengths import LengthChoice


class Settings(BaseModel):
    """One modality's preprocessing settings: the `data.<modality>` config section, saved with the model."""

    # Unknown keys are errors: a typo must never silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class ColumnType:
    """A modality's Parquet column: which Arrow types it accepts, said in words for contract errors."""

    accepts: Callable[[pa.DataType], bool]
    description: str
    media: bool  # encoded bytes in Parquet, base64 text in a JSON request


def _is_string(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _is_binary(arrow_type: pa.DataType) -> bool:
    return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)


def string_column(description: str = "string") -> ColumnType:
    return ColumnType(_is_string, description, media=False)


def binary_column(description: str) -> ColumnType:
    return ColumnType(_is_binary, f"binary ({description})", media=True)


@dataclass(frozen=True)
class AutoLength:
    """A length setting that may be `auto`: measured from a sample of the training shards' cells."""

    field: str  # settings field, e.g. "max_tokens"
    choose: Callable[[list, Any], LengthChoice]  # (sampled cells, settings) -> the choice
    fallback: float  # the value of an `auto` never measured (a spec built without data)


@dataclass(frozen=True)
class Modality:
    """One input kind. Decoders run on CPU (Ray Data tasks, the pyfunc server); augment and the encoder on the
    training worker. Every callable is module-level so that the record pickles into Ray tasks."""

    name: str  # the Parquet column and the batch key
    settings: type[Settings]  # the `data.<name>` config section
    column: ColumnType
    decode: Callable[[list, Any], Decoded]  # (cells, settings) -> (N, *input_shape) values, presence, events
    input_shape: Callable[[Any], tuple[int, ...]]  # settings -> shape of one decoded example
    augment: Callable  # (decoded tensor batch, torch.Generator) -> tensor batch of the same shape
    build_encoder: Callable  # (settings, embed_dim, norm name) -> nn.Module mapping a batch to (B, embed_dim)
    example_cell: Callable[[Any], Any]  # settings -> one valid JSON cell for the registered model's input example
    # The validation pass needs presence and events only; a cheaper decode that yields the same presence.
    check: Callable[[list, Any], Decoded] | None = None
    auto_length: AutoLength | None = None
    # The decoded-feature cache (resmm/data/cache.py): `compact` (decoded numpy values, settings) -> the smaller
    # array an entry stores; `expand` (that array as a tensor, settings) -> the decoded values again, on the
    # worker's device, returning its input unchanged when it is already a model input. None: stored as decoded.
    compact: Callable[[Any, Any], Any] | None = None
    expand: Callable[[Any, Any], Any] | None = None

    def concrete(self, settings: Settings) -> Settings:
        """`settings` with an `auto` length that was not measured from data read as its fallback."""
        length = self.auto_length
        if length is None or getattr(settings, length.field) != "auto":
            return settings
        return settings.model_copy(update={length.field: length.fallback})
