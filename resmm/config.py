"""Typed run configuration: YAML plus dotted `key=value` overrides, validated in one place with one-line errors."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from resmm.choices import FUSION_NAMES, IMPUTER_NAMES, LOSS_NAMES, NORM_NAMES, RENAMED_IMPUTERS, RESAMPLER_NAMES
from resmm.modalities import MODALITIES as MODALITY_RECORDS, nest_flat_keys
from resmm.sources.contract import GROUP_COLUMN

MODALITIES = tuple(MODALITY_RECORDS)
ModalityName = Literal[MODALITIES]
# Each family's names, as its registry keys them (resmm/choices.py: without importing torch).
FusionName = Literal[FUSION_NAMES]
NormName = Literal[NORM_NAMES]
ImputerName = Literal[IMPUTER_NAMES]
ResamplerName = Literal[("auto", *RESAMPLER_NAMES)]  # auto: chosen from the profile (resmm/train/recipe.py)
LossName = Literal[("auto", *LOSS_NAMES)]


class ConfigError(ValueError):
    """A user mistake in the configuration; the message is one line that names the key."""


class _Section(BaseModel):
    # Unknown keys are errors: a typo must never silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _DataSection(_Section):
    """`data.*` without the per-modality sections, which DataConfig adds from the modality registry."""

    path: str | None = None  # directory, glob or fsspec URL of Parquet shards; None = built-in demo dataset
    val_path: str | None = None  # separate evaluation shards; None = hash split of `path` by group, else sample_id
    # share of the rows (whole groups) held out for validation when data.val_path is unset
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    # The column naming each row's group (the same object photographed again, the same speaker): a group's rows
    # all land on one side of the hash split, so near-duplicates never straddle it. Rows with a null or empty
    # group, and data without the default column, split by sample_id. None = split by sample_id only.
    group_column: str | None = Field(GROUP_COLUMN, min_length=1)
    classes: list[str] | None = None  # class vocabulary; None = derived from the training labels
    preprocess_batch_rows: int = Field(256, ge=1)  # rows per decode call inside a read+decode task
    # Decoded-feature cache (resmm/data/cache.py): decode each shard once and stream later epochs and runs from
    # compact features.
    cache: Literal["on", "off"] = "on"
    cache_path: str | None = None  # where the cache lives, any fsspec URL; None = <train.storage_path>/feature-cache
    # Rows with a null label in a labelled split: quarantined (a fault), or kept as unlabeled rows that feed
    # only the unsupervised objectives (retrieval, the regress and mvae imputers).
    unlabeled_rows: Literal["quarantine", "keep"] = "quarantine"
    # Long tail and missing modalities (see resmm/data/resample.py and resmm/models/imputation.py).
    resample: ResamplerName = "auto"  # auto: resmm/train/recipe.py
    class_weights: dict[str, float] | None = None  # explicit per-class sampling weights (override `resample`)
    epoch_rows: int | None = Field(None, ge=1)  # rows fed per epoch, all workers together; None = training rows
    # Batches each training worker fetches and formats ahead in background threads, so the step rarely waits.
    prefetch_batches: int = Field(4, ge=0, le=1024)
    # A feed that delivers no rows for this long fails the run with one line instead of waiting for ever (Ray Data
    # waits for a node matching data.label_selector without limit); None = wait.
    stall_timeout_minutes: float | None = Field(30.0, gt=0.0)
    # Fresh augmentation of every fed copy: image flip/rotate/crop, audio shift/gain/noise, text token dropout.
    augment: bool = False
    # How an absent modality's embedding is filled in before fusion (resmm/models/imputation.py).
    impute: ImputerName = "zero"
    # Ray Data's object-store budget (MB) for each streaming execution; None = Ray's default share of the object
    # store. A small budget caps memory on long reads at some throughput (docs/benchmarks.md).
    object_store_budget_mb: int | None = Field(None, ge=64)
    # Ray node labels for Ray Data's tasks (e.g. {resmm.io/role: data} for a CPU worker group).
    label_selector: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_modality_keys(cls, values: Any) -> Any:
        """Reads the keys of resmm before per-modality sections: `data.image_size_px` -> `data.image.size_px`."""
        return nest_flat_keys(values) if isinstance(values, dict) else values

    @field_validator("impute", mode="before")
    @classmethod
    def _renamed_imputer(cls, value: Any) -> Any:
        """`generative` was the embedding regressor's name before the MVAE came (issue 28): it reads as `regress`."""
        return RENAMED_IMPUTERS.get(value, value) if isinstance(value, str) else value

    @field_validator("class_weights")
    @classmethod
    def _weights_positive(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and (not value or any(w < 0 for w in value.values()) or not any(value.values())):
            raise ValueError("must map class names to non-negative weights, at least one positive")
        return None if value is None else {str(k): float(w) for k, w in value.items()}

    @field_validator("group_column")
    @classmethod
    def _group_column_is_not_a_contract_column(cls, value: str | None) -> str | None:
        if value in ("sample_id", "label", *MODALITIES):
            raise ValueError("must name the column of each row's group, not a contract column (null: by sample_id)")
        return value

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        value = [str(v) for v in value]
        if len(value) < 2:
            raise ValueError("needs at least 2 classes")
        if len(set(value)) != len(value):
            raise ValueError("contains duplicates")
        return value


# data.<modality>: each modality's own settings section (ImageCfg, TextCfg, ...), one per registered modality.
DataConfig = create_model(
    "DataConfig", __base__=_DataSection,
    **{name: (record.settings, Field(default_factory=record.settings)) for name, record in MODALITY_RECORDS.items()},
)


class ModelConfig(_Section):
    modalities: list[ModalityName] = Field(default_factory=lambda: list(MODALITIES))  # the columns a model reads
    fusion: FusionName = "mrn"  # how modality embeddings are fused (resmm/models/fusion.py)
    embed_dim: int = Field(96, ge=8, le=4096)  # width of every modality embedding and of the fusion
    fusion_depth: int = Field(2, ge=1, le=16)  # residual fusion layers (MRN's L)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # dropout in the encoders' and heads' MLPs
    # Encoder normalisation: `batch` trains fastest; `group` makes results independent of the worker count.
    norm: NormName = "batch"
    retrieval: bool = False  # contrastive (InfoNCE) alignment of modality embeddings + recall@k evaluation
    # modality -> encoder name from its registry (resmm/modalities/<modality>.py): image resnet|vit|hf:<source>,
    # text resconv|lstm|gru|transformer|hf:<source>, audio resnet|gru|lstm|transformer. Filled with each
    # modality's default, so the run's params name every encoder.
    encoders: dict[str, str] = Field(default_factory=dict)
    # modality -> the chosen encoder's own options (e.g. model.encoder_options.image.patch_px=8), validated by it.
    encoder_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("modalities", mode="before")
    @classmethod
    def _parse_modalities(cls, value: Any) -> Any:
        if isinstance(value, str):  # `model.modalities=image,text` on the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("modalities")
    @classmethod
    def _modalities_non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"must be a non-empty subset of {list(MODALITIES)}")
        if len(set(value)) != len(value):
            raise ValueError("lists a modality twice")
        return sorted(value, key=MODALITIES.index)

    @model_validator(mode="after")
    def _encoders_from_the_registry(self) -> "ModelConfig":
        """Every modality gets a registered encoder (its default unless named) with options it accepts."""
        for name, table in (("encoders", self.encoders), ("encoder_options", self.encoder_options)):
            unknown = sorted(set(table) - set(MODALITIES))
            if unknown:
                raise ValueError(f"{name}.{unknown[0]}: not a modality (choose from {', '.join(MODALITIES)})")
        encoders, options = {}, {}
        # Named but unused modalities are checked too (a typo there is still a typo), then left out.
        for m in [m for m in MODALITIES if m in self.modalities or m in self.encoders or m in self.encoder_options]:
            record = MODALITY_RECORDS[m]
            chosen = self.encoders.get(m) or record.default_encoder
            try:
                encoder = record.encoder(chosen)
                options[m] = encoder.options(**self.encoder_options.get(m, {})).model_dump()
            except ValidationError as exc:
                raise ValueError(f"encoder_options.{m}: {_option_error(exc, chosen, encoder.options)}") from None
            except ValueError as exc:
                raise ValueError(f"encoders.{m}: {exc}") from None
            encoders[m] = chosen
        used = set(self.modalities)
        # Assign around validate_assignment, which would run this validator again for each field.
        self.__dict__.update(encoders={m: e for m, e in encoders.items() if m in used},
                             encoder_options={m: o for m, o in options.items() if o and m in used})
        return self

    def encoder_of(self, modality: str) -> str | None:
        """The modality's encoder name (None: its default, for model configs built without validation)."""
        return self.encoders.get(modality)


def _option_error(exc: ValidationError, encoder: str, options: type[BaseModel]) -> str:
    first = exc.errors()[0]
    key = ".".join(map(str, first["loc"]))
    if first["type"] == "extra_forbidden":
        return f"encoder '{encoder}' has no option '{key}' (its options: {', '.join(options.model_fields) or 'none'})"
    return f"{key}: {first['msg']} (got {first.get('input')!r})"


class TrainConfig(_Section):
    num_workers: int = Field(2, ge=1, le=1024)  # Ray Train DDP workers
    use_gpu: bool = False  # one GPU per worker
    # Fractional CPUs so that 2 workers on a 2-core machine still leave room for Ray Data's tasks.
    cpus_per_worker: float = Field(0.5, gt=0.0)
    amp: bool = True  # mixed precision on GPU workers; ignored on CPU
    # None (default): train until validation balanced accuracy stops improving (resmm/train/budget.py);
    # a number: exactly that many epochs on a cosine schedule.
    epochs: int | None = Field(None, ge=1, le=10000)
    max_epochs: int = Field(30, ge=1, le=10000)  # cap of the default budget
    # Epochs without a gain above the noise (and above min_delta) before the default budget stops.
    patience: int = Field(4, ge=1)
    min_delta: float = Field(0.002, ge=0.0, le=1.0)  # the smallest validation gain that counts as progress
    # Optimizer steps (all workers together) before the default budget may stop, at most half of max_epochs:
    # early readings are the noisiest (resmm/train/budget.py). 0: no floor.
    min_steps: int = Field(1000, ge=0)
    max_minutes: float | None = Field(None, gt=0.0)  # wall-time cap of the default budget; None = none
    # Rows per optimizer step, all workers together (each worker takes its share), so that changing the worker
    # count changes neither the steps per epoch nor the result. batch_size_per_worker, when set, overrides it
    # (the usual unit on GPUs: global batch = that x workers).
    batch_size: int = Field(64, ge=1)
    batch_size_per_worker: int | None = Field(None, ge=1)  # overrides batch_size: rows per step on each worker
    lr: float = Field(3e-3, gt=0.0, le=10.0)  # AdamW learning rate
    weight_decay: float = Field(1e-4, ge=0.0)  # AdamW weight decay
    seed: int = 0  # weights, splits of work, resampling draws and augmentation
    # auto: chosen from the class counts of the profile pass (resmm/train/recipe.py)
    loss: LossName = "auto"
    logit_adjust_tau: float = Field(1.0, gt=0.0, le=10.0)  # τ of `logit_adjusted`: logits + τ·log(prior)
    # ModDrop at the fusion: hide each present modality from the fused head w.p. p (its own head still sees it).
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)  # of every head's loss (focal excepted)
    # Validate, checkpoint and register an exponential moving average of the weights (decay per step); None: off.
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)
    # Weight of the per-modality heads' losses (their mean). At 1.0 each encoder keeps a gradient of its own, so
    # a modality that learns slower is not starved by one that learns faster (Wang et al. 2020, "What makes
    # training multi-modal classification networks hard?"); 1.0 beat 0.3 on both development corpora.
    aux_loss_weight: float = Field(1.0, ge=0.0)
    retrieval_loss_weight: float = Field(0.5, ge=0.0)  # weight of InfoNCE when model.retrieval is on
    # Ray node labels for the training workers (e.g. {resmm.io/role: train} for a GPU worker group).
    worker_label_selector: dict[str, str] | None = None
    max_failures: int = Field(2, ge=-1)  # worker-group restarts from the last checkpoint (-1 = unlimited)
    # Checkpoints inside an epoch as well as at its end, at least this often (a resumed epoch skips the rows it
    # already trained: resmm/train/position.py); None = epoch ends only. Steps count per worker.
    checkpoint_every_minutes: float | None = Field(10.0, gt=0.0)
    checkpoint_every_steps: int | None = Field(None, ge=1)  # also checkpoint inside an epoch every N steps
    storage_path: str = "resmm_runs"  # Ray Train checkpoints and the quarantine file; local dir or URL
    # Ray Train run name; None = derived from the config and the data (resmm/tracking/runs.py run_key), so that
    # resubmitting the same job after its driver was lost resumes its checkpoint and its MLflow run.
    run_name: str | None = None

    def worker_batch_rows(self) -> int:
        """Rows each worker feeds per step."""
        if self.batch_size_per_worker is not None:
            return self.batch_size_per_worker
        return -(-self.batch_size // self.num_workers)  # ceil: never a 0-row batch


class MlflowConfig(_Section):
    experiment: str = "resmm"  # MLflow experiment of the runs
    registered_model: str = "resmm"  # registry name each run's model version is created under


class RetrainConfig(_Section):
    eval_path: str | None = None  # shards both models are scored on; None = the validation split of data.path
    min_improvement: float = Field(0.0, ge=-1.0, le=1.0)  # challenger balanced accuracy must beat champion + this
    max_robustness_drop: float = Field(0.02, ge=0.0, le=1.0)  # tolerated drop of mean pattern accuracy
    warm_start: bool = False  # start the challenger from the champion's weights
    lock_path: str | None = None  # lease file (shared POSIX path); None = <train.storage_path>/retrain-<model>.lock
    lease_seconds: float = Field(6 * 3600, gt=0)  # a crashed holder's lease expires after this


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @model_validator(mode="after")
    def _settings_follow_the_chosen_encoders(self) -> "Config":
        """Each modality's settings as its chosen encoder needs them (an hf text tower brings its tokenizer)."""
        for name, record in MODALITY_RECORDS.items():
            if record.follow_encoder is not None and hasattr(self.data, name):
                self.data.__dict__[name] = record.follow_encoder(getattr(self.data, name),
                                                                 self.model.encoders.get(name))
        return self

    def flat(self) -> dict[str, Any]:
        """The resolved config as `section.key -> value`, the shape MLflow params want."""
        return _flatten(self.model_dump(mode="json"))

    def digest(self) -> str:
        """Stable short hash of the resolved config, for lineage tags."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _set_dotted(tree: dict[str, Any], dotted_key: str, value: Any) -> None:
    parts = dotted_key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config error: {dotted_key}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`model.fusion=concat` -> ('model.fusion', 'concat'); values are parsed as YAML scalars or lists."""
    if "=" not in text:
        raise ConfigError(f"config error: override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"config error: override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _explain(error: ValidationError) -> str:
    """Turn pydantic's multi-line report into one line that names the key and what is allowed."""
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "<root>"
    kind = first["type"]
    if kind == "extra_forbidden":
        section = key.rsplit(".", 1)[0] if "." in key else None
        allowed = _allowed_keys(section)
        return f"config error: unknown key '{key}' (allowed: {', '.join(allowed)})"
    message = first["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        message = message.replace("Input should be", "must be one of")
    got = first.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"config error: {key}: {message}{got_text}"


def _allowed_keys(section: str | None) -> list[str]:
    """The keys of a dotted section (`data`, `data.image`), or the top-level sections if it names none."""
    model: type[BaseModel] = Config
    for part in (section or "").split(".") if section else []:
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return list(Config.model_fields)
        model = field.annotation
    prefix = f"{section}." if section else ""
    return [f"{prefix}{k}" for k in model.model_fields]


def load_config(yaml_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build the run config from an optional YAML file and dotted overrides; raises ConfigError."""
    tree: dict[str, Any] = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"config error: config file '{path}' does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config error: '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config error: '{path}' must hold a mapping of sections")
        tree = loaded
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
