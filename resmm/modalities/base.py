"""The modality record: everything resmm knows about one kind of input, so that the rest of the code iterates
a registry instead of naming modalities (open_clip's tower configs, TorchMultimodal's encoder dicts)."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from resmm.data.decoded import Decoded
from resmm.data.lengths import LengthChoice


class Settings(BaseModel):
    """One modality's preprocessing settings: the `data.<modality>` config section, saved with the model."""

    # Unknown keys are errors: a typo must never silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CellTypeError(ValueError):
    """A served cell of a type its column never takes (a number where text belongs): the request is refused."""


@dataclass(frozen=True)
class ColumnType:
    """A modality's column: which Arrow types it accepts (said in words for contract errors), and how the served
    model reads a request cell of it."""

    accepts: Callable[[pa.DataType], bool]
    description: str
    # (cell, column name) -> (the cell as the decoder takes it, or None for missing; whether it was unreadable).
    # Raises CellTypeError for a cell of the wrong type. Python callers send what Parquet holds; a REST request
    # sends JSON, so media arrives as base64 text.
    parse_request: Callable[[Any, str], tuple[Any, bool]]
    # The column in the served model's signature, as MLflow's ColSpec JSON (without name and required).
    request_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    media: bool = False  # encoded bytes in Parquet, base64 text in a JSON request


def _is_string(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _is_binary(arrow_type: pa.DataType) -> bool:
    return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)


def text_cell(value, column: str) -> tuple[str | None, bool]:
    """A served text cell: a string (blank: missing) or null."""
    if value is None or isinstance(value, str):
        return (value if value and value.strip() else None), False
    raise CellTypeError(f"column '{column}' holds a {type(value).__name__}; expected a string or null")


def media_cell(value, column: str) -> tuple[bytes | None, bool]:
    """A served image / audio cell: raw bytes as they are, a string as base64 (unreadable when it is not)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, False
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) or None, False
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True), False
        except (binascii.Error, ValueError):
            return None, True
    raise CellTypeError(f"column '{column}' holds a {type(value).__name__}; expected base64 text, bytes or null")


def string_column(description: str = "string") -> ColumnType:
    return ColumnType(_is_string, description, text_cell)


def binary_column(description: str) -> ColumnType:
    return ColumnType(_is_binary, f"binary ({description})", media_cell, media=True)


@dataclass(frozen=True)
class AutoLength:
    """A length setting that may be `auto`: measured from a sample of the training shards' cells."""

    field: str  # settings field, e.g. "max_tokens"
    choose: Callable[[list, Any], LengthChoice]  # (sampled cells, settings) -> the choice
    fallback: float  # the value of an `auto` never measured (a spec built without data)


class EncoderOptions(BaseModel):
    """An encoder's options (`model.encoder_options.<modality>.*`): none here, so that an encoder without options
    refuses any; every encoder's options class derives from it."""

    model_config = ConfigDict(extra="forbid")


class TransformerOptions(EncoderOptions):
    """The options every Transformer encoder takes (resmm/models/sequence_encoders.py ClsTransformer)."""

    width: int = Field(64, ge=8)
    depth: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class RNNOptions(EncoderOptions):
    """The options every bidirectional LSTM / GRU encoder takes (sequence_encoders.BiRNN)."""

    hidden: int = Field(64, ge=4)  # per direction
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


@dataclass(frozen=True)
class Encoder:
    """One encoder a modality offers, chosen by `model.encoders.<modality>=<name>`; its options are the
    `model.encoder_options.<modality>` section, validated by `options`."""

    build: Callable  # (settings, embed_dim, norm name, options) -> nn.Module mapping a batch to (B, embed_dim)
    options: type[EncoderOptions] = EncoderOptions


class PretrainedOptions(EncoderOptions):
    """A pretrained tower's options: frozen (only the projection to the embedding trains) or fine-tuned."""

    mode: Literal["freeze", "finetune"] = "freeze"


@dataclass(frozen=True)
class Reference:
    """The model a user would write by hand for one modality: the baseline `resmm compare` trains beside resmm."""

    name: str  # as reports name it, e.g. "image CNN"
    build: Callable  # (settings, number of classes) -> nn.Module mapping a batch of the modality to logits


PRETRAINED_PREFIX = "hf:"  # `model.encoders.<modality>=hf:<local dir or model id>`: a Hugging Face tower


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
    auto_length: AutoLength | None = None
    # The decoded-feature cache (resmm/data/cache.py): `compact` (decoded numpy values, settings) -> the smaller
    # array an entry stores; `expand` (that array as a tensor, settings) -> the decoded values again, on the
    # worker's device, returning its input unchanged when it is already a model input. None: stored as decoded.
    compact: Callable[[Any, Any], Any] | None = None
    expand: Callable[[Any, Any], Any] | None = None
    # (cells, settings) -> Decoded straight in the compact form, where the modality can skip the model-input form
    # (image: uint8 pixels, quantised once); None: `compact` of `decode`'s values.
    decode_compact: Callable[[list, Any], Decoded] | None = None
    # The encoder family: `build_encoder` is the default, named `default_encoder`; `encoders` the alternatives
    # (resmm/models/sequence_encoders.py). `pretrained` builds `hf:<source>` towers (the `pretrained` extra).
    default_encoder: str = "default"
    encoders: Mapping[str, Encoder] = field(default_factory=dict)
    pretrained: Encoder | None = None
    # settings -> the same with the files they name read in (a tokenizer), so that the spec saved with a model
    # is self-contained and every decode task and the server tokenize exactly as training did.
    pin_files: Callable[[Any], Any] | None = None
    # (settings, the chosen encoder's name or None) -> the settings that encoder needs (an hf text tower brings
    # its own tokenizer unless another is named); None: settings do not depend on the encoder.
    follow_encoder: Callable[[Any, str | None], Any] | None = None
    # settings (as saved in a model's spec) -> whether serving them needs the `pretrained` extra (an hf tokenizer).
    needs_pretrained: Callable[[Mapping[str, Any]], bool] | None = None
    reference: Reference | None = None  # its hand-written baseline (None: compare leaves the modality out)
    # Takes part in cross-modal retrieval (model.retrieval): a projection, the InfoNCE loss against every other
    # such modality, and recall@k both ways.
    retrieval: bool = False
    # Event names of the decode's faults (a DecodeError: the modality is marked missing and counted as such);
    # any other event it reports is an input limit (the value was cut to fit, and counted).
    faults: tuple[str, ...] = ()
    # Modules the decode calls into beyond the record's own (resmm/data/image.py for images): with the modules
    # that define the record's callables, their code keys the decoded-feature cache (decode_sources).
    decode_modules: tuple[str, ...] = ()

    def concrete(self, settings: Settings) -> Settings:
        """`settings` with an `auto` length that was not measured from data read as its fallback, and the files
        they name read in."""
        length = self.auto_length
        if length is not None and getattr(settings, length.field) == "auto":
            settings = settings.model_copy(update={length.field: length.fallback})
        return settings if self.pin_files is None else self.pin_files(settings)

    def decode_sources(self) -> list[str]:
        """The modules whose code shapes this modality's decoded values: where its decode, compact,
        expand, settings and file pinning are defined, and `decode_modules`."""
        defined = (self.decode, self.compact, self.decode_compact, self.expand, self.settings, self.input_shape,
                   self.pin_files)
        return sorted({f.__module__ for f in defined if f is not None} | set(self.decode_modules))

    def encoder_names(self) -> list[str]:
        names = [self.default_encoder, *self.encoders]
        return names + ([f"{PRETRAINED_PREFIX}<dir or model id>"] if self.pretrained is not None else [])

    def encoder(self, name: str | None) -> Encoder:
        """The encoder called `name` (None: the default); raises ValueError naming the choices."""
        if name is None or name == self.default_encoder:
            return Encoder(lambda settings, d, norm, options: self.build_encoder(settings, d, norm))
        if name in self.encoders:
            return self.encoders[name]
        if self.pretrained is not None and name.startswith(PRETRAINED_PREFIX) and len(name) > len(PRETRAINED_PREFIX):
            return self.pretrained
        raise ValueError(f"'{name}' is not one of the {self.name} encoders ({', '.join(self.encoder_names())})")

    def build(self, name: str | None, settings: Settings, embed_dim: int, norm: str, options: dict | None):
        """The nn.Module of encoder `name` with its validated `options` (a pretrained one also gets its source)."""
        encoder = self.encoder(name)
        chosen = encoder.options(**(options or {}))
        if encoder is self.pretrained:
            return encoder.build(settings, embed_dim, name.removeprefix(PRETRAINED_PREFIX), chosen)
        return encoder.build(settings, embed_dim, norm, chosen)
