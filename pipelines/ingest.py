"""Ray Data graphs for training: scan shards → validate the contract → split → decode/preprocess, all streaming."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from resmm.contract import ContractError, check_schema, label_kind
from resmm.data.batch import BatchPreprocessor, PreprocessSpec, label_name
from resmm.data.split import select_split
from resmm.shards import Shard, arrow_filesystem, list_parquet_files, read_footers


@dataclass(frozen=True)
class Source:
    """A validated set of shards behind one data URL."""

    url: str
    filesystem: object  # fsspec filesystem
    shards: tuple[Shard, ...]

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s in self.shards)


def scan_source(url: str, modalities, labelled: bool = True) -> Source:
    """List the shards behind `url`, read every footer, and check the contract before any data is read."""
    fs, paths = list_parquet_files(url)
    try:
        shards = read_footers(fs, paths)
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(f"{url}: a shard has an unreadable Parquet footer: {exc}") from None
    kinds: dict[str, str] = {}
    for shard in shards:
        check_schema(shard.schema, shard.url, modalities, labelled)
        kinds.setdefault(label_kind(shard.schema), shard.url)
    if "integer" in kinds and "string" in kinds:
        raise ContractError(
            f"column 'label' is integer in {kinds['integer']} but string in {kinds['string']}; "
            "use one label type across shards"
        )
    return Source(url=url, filesystem=fs, shards=tuple(shards))


def read_source(source: Source, columns: list[str]) -> ray.data.Dataset:
    """Stream the validated shards, projecting only the contract columns the run needs."""
    present = [c for c in columns if all(c in s.schema.names for s in source.shards)]
    return ray.data.read_parquet(
        [s.path for s in source.shards],
        filesystem=arrow_filesystem(source.filesystem),
        columns=present,
    )


def profile_batch(table: pa.Table, modalities: tuple[str, ...]) -> pa.Table:
    """map_batches stage: one row per (label, presence pattern) with its count; only null bitmaps are read."""
    label = table.column("label").combine_chunks().cast(pa.string()) if "label" in table.column_names else (
        pa.nulls(table.num_rows, pa.string()))
    columns = {"label": label}
    for m in modalities:
        columns[m] = pc.is_valid(table.column(m)) if m in table.column_names else pa.repeat(False, table.num_rows)
    grouped = pa.table(columns).group_by(["label", *modalities], use_threads=False).aggregate([([], "count_all")])
    return grouped.rename_columns([*(c if c != "count_all" else "count" for c in grouped.column_names)])


@dataclass
class DataProfile:
    """What one streaming pass over the training rows found: class counts and modality presence."""

    rows: int
    class_counts: dict  # class name (None = unlabeled) -> rows
    presence: dict  # modality -> rows where it is present
    presence_by_class: dict  # class name -> modality -> rows

    def as_summary(self) -> dict:
        labelled = {k: v for k, v in self.class_counts.items() if k is not None}
        order = class_order(labelled)
        return {
            "rows": self.rows,
            "unlabeled_rows": self.class_counts.get(None, 0),
            "class_counts": {k: labelled[k] for k in order},
            "presence": dict(self.presence),
            "presence_by_class": {k: self.presence_by_class.get(k, {}) for k in order},
        }


def profile_rows(dataset: ray.data.Dataset, modalities) -> DataProfile:
    """One streaming aggregation: partial counts per batch, summed on the driver (a groupby would shuffle into
    hundreds of partitions for a handful of keys)."""
    modalities = tuple(modalities)
    partial = dataset.map_batches(profile_batch, batch_format="pyarrow", fn_kwargs={"modalities": modalities})
    rows, classes = 0, Counter()
    presence = Counter()
    by_class: dict = {}
    for row in partial.iter_rows():
        n = int(row["count"])
        name = label_name(row["label"])
        rows += n
        classes[name] += n
        for m in modalities:
            if row[m]:
                presence[m] += n
                by_class.setdefault(name, Counter())[m] += n
    return DataProfile(
        rows=rows,
        class_counts=dict(classes),
        presence={m: presence[m] for m in modalities},
        presence_by_class={k: dict(v) for k, v in by_class.items()},
    )


def read_split(source: Source, columns: list[str], *, validation: bool | None, val_fraction: float):
    """Stream one side of the sample_id hash split (validation=True/False), or every row (None)."""
    dataset = read_source(source, columns)
    if validation is None:
        return dataset
    return dataset.map_batches(
        select_split, batch_format="pyarrow", fn_kwargs={"validation": validation, "val_fraction": val_fraction}
    )


def profile_split(source: Source, modalities, *, validation: bool | None, val_fraction: float) -> DataProfile:
    """Profile the rows of one side of the split (or all rows) without decoding anything."""
    dataset = read_split(source, ["sample_id", "label", *modalities], validation=validation, val_fraction=val_fraction)
    return profile_rows(dataset, modalities)


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


def preprocess_batch(batch, spec: PreprocessSpec):
    """map_batches stage: module-level so it pickles to Ray Data tasks."""
    return BatchPreprocessor(spec)(batch)


def build_split(
    source: Source,
    spec: PreprocessSpec,
    *,
    validation: bool | None,
    val_fraction: float,
    batch_rows: int,
) -> ray.data.Dataset:
    """read → (optional hash split) → decode/preprocess, as one lazy streaming Dataset."""
    dataset = read_split(
        source, ["sample_id", "label", *spec.modalities], validation=validation, val_fraction=val_fraction
    )
    return dataset.map_batches(
        preprocess_batch, batch_format="numpy", batch_size=batch_rows, fn_kwargs={"spec": spec}
    )
