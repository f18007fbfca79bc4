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


def label_value_counts(table: pa.Table) -> pa.Table:
    """map_batches stage: one (label, count) row per distinct label in the batch."""
    counts = pc.value_counts(table.column("label").combine_chunks().cast(pa.string()))
    return pa.table({"label": counts.field("values"), "count": counts.field("counts")})


def count_classes(source: Source) -> Counter:
    """Streaming label count over the shards: only the label column is read, and only tiny partial counts
    travel back to the driver (a groupby would shuffle into hundreds of partitions for ten labels)."""
    counts: Counter = Counter()
    partial = read_source(source, ["label"]).map_batches(label_value_counts, batch_format="pyarrow")
    for row in partial.iter_rows():
        counts[label_name(row["label"])] += int(row["count"])
    return counts


def resolve_classes(configured: list[str] | None, train_counts: Counter) -> list[str]:
    """The class vocabulary: the configured list, or the sorted labels seen (numerically when all are integers)."""
    if configured:
        return list(configured)
    names = [n for n in train_counts if n is not None]
    if len(names) < 2:
        raise ContractError(f"training data holds {len(names)} distinct label(s); at least 2 classes are needed")
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


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
    dataset = read_source(source, ["sample_id", "label", *spec.modalities])
    if validation is not None:
        dataset = dataset.map_batches(
            select_split,
            batch_format="pyarrow",
            fn_kwargs={"validation": validation, "val_fraction": val_fraction},
        )
    return dataset.map_batches(
        preprocess_batch, batch_format="numpy", batch_size=batch_rows, fn_kwargs={"spec": spec}
    )
