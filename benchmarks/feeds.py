"""The ingest paths being compared: each reads the same Parquet shards, applies resmm's own transforms (decode,
tokenise, log-mel) and yields model-ready batches. Each feed returns (rows, seconds of iteration).

Kept free of torch / ray imports at module level so that the Petastorm feed runs in its own old-pyarrow venv.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COLUMNS = ["sample_id", "label", "image", "text", "audio"]
BATCH_ROWS = 256


def default_spec(classes):
    from resmm.data.batch import PreprocessSpec

    from resmm.config import DataConfig

    # The demo's lengths, fixed so that every feed decodes the same arrays (`auto` would sample the shards).
    data = DataConfig(text={"max_tokens": 48}, audio={"max_seconds": 1.0})
    return PreprocessSpec.from_config(data, ("image", "text", "audio"), classes)


def feed_resmm(files: list[str], classes: list[str], class_counts: list[int],
               overrides: list[str] = ()) -> tuple[int, float]:
    """resmm's training feed: Ray Data read → map_batches(decode + preprocess) → iter_torch_batches, then
    the worker-side resampling (balanced Poisson copies, as `data.resample=balanced` feeds them). Config
    overrides apply Ray Data's execution settings the way a training run does."""
    import numpy as np
    import torch

    from pipelines.ingest import Source, build_split
    from pipelines.runtime import configure_data_context, connect_ray
    from resmm.config import load_config
    from resmm.data.resample import sampling_rates, target_shares
    from resmm.sources.shards import open_filesystem, read_footers

    connect_ray()
    configure_data_context(load_config(None, list(overrides)))
    fs, _ = open_filesystem(files[0])
    source = Source(url=str(Path(files[0]).parent), filesystem=fs, shards=tuple(read_footers(fs, files)[0]))
    dataset = build_split(source, default_spec(classes), validation=None, val_fraction=0.1, batch_rows=BATCH_ROWS)
    counts = np.asarray(class_counts)
    rates = torch.tensor(sampling_rates(target_shares("balanced", counts, 0, 1, None), counts, int(counts.sum())))
    generator = torch.Generator().manual_seed(0)
    from resmm.data.resample import resample_rows

    started, rows = time.perf_counter(), 0
    for batch in dataset.iter_torch_batches(batch_size=64, prefetch_batches=4):
        index = resample_rows(batch["label"], rates.float(), 1.0, generator)
        fed = {k: v[index] for k, v in batch.items()}
        rows += len(batch["label"])
        del fed
    return rows, time.perf_counter() - started


def _row_group_units(files: list[str]) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    return [(f, g) for f in files for g in range(pq.ParquetFile(f).num_row_groups)]


class _ParquetRowGroups:
    """A torch IterableDataset over (file, row group) units, split across DataLoader workers; each unit is read
    with pyarrow in BATCH_ROWS slices and preprocessed by resmm's BatchPreprocessor."""

    def __init__(self, files, spec):
        self.units = _row_group_units(files)
        self.spec = spec

    def __iter__(self):
        import pyarrow.parquet as pq
        import torch.utils.data

        from resmm.data.batch import BatchPreprocessor

        info = torch.utils.data.get_worker_info()
        units = self.units if info is None else self.units[info.id :: info.num_workers]
        preprocess = BatchPreprocessor(self.spec)
        for path, group in units:
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, row_groups=[group],
                                                                  columns=COLUMNS):
                yield preprocess({c: record_batch.column(c) for c in record_batch.schema.names})


def feed_dataloader(files: list[str], classes: list[str], class_counts: list[int]) -> tuple[int, float]:
    """A plain PyTorch DataLoader (2 workers) over pyarrow, running resmm's transforms in the workers."""
    import torch.utils.data

    class Dataset(_ParquetRowGroups, torch.utils.data.IterableDataset):
        pass

    loader = torch.utils.data.DataLoader(Dataset(files, default_spec(classes)), batch_size=None, num_workers=2,
                                         prefetch_factor=4, persistent_workers=False)
    started, rows = time.perf_counter(), 0
    for batch in loader:
        rows += len(batch["label"])
    return rows, time.perf_counter() - started


def feed_hf_datasets(files: list[str], classes: list[str], class_counts: list[int]) -> tuple[int, float]:
    """Hugging Face `datasets` streaming the Parquet files, resmm's transforms as a batched map, through a
    DataLoader with 2 workers (HF shards an IterableDataset across DataLoader workers by file)."""
    import datasets
    import torch.utils.data

    from resmm.data.batch import BatchPreprocessor

    preprocess = BatchPreprocessor(default_spec(classes))
    stream = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    stream = stream.select_columns(COLUMNS).map(
        lambda batch: {k: list(v) for k, v in preprocess(batch).items()}, batched=True, batch_size=BATCH_ROWS,
        remove_columns=COLUMNS,
    ).with_format("numpy")
    loader = torch.utils.data.DataLoader(stream, batch_size=64, num_workers=2)
    started, rows = time.perf_counter(), 0
    for batch in loader:
        rows += len(batch["label"])
    return rows, time.perf_counter() - started


def feed_petastorm(files: list[str], classes: list[str], class_counts: list[int]) -> tuple[int, float]:
    """Petastorm 0.13.1 `make_batch_reader` (2 reader workers) with resmm's transforms in a TransformSpec, so
    that they run in Petastorm's worker pool the way its documentation recommends."""
    import numpy as np
    from petastorm import make_batch_reader
    from petastorm.transform import TransformSpec

    from resmm.data.batch import BatchPreprocessor

    spec = default_spec(classes)
    preprocess = BatchPreprocessor(spec)

    def transform(frame):
        out = preprocess({c: frame[c].tolist() for c in COLUMNS})
        import pandas as pd

        return pd.DataFrame({k: list(np.ascontiguousarray(v)) for k, v in out.items()})

    edit_fields = [(m, np.float32 if m != "text" else np.int64, spec.input_shape(m), False) for m in spec.modalities]
    edit_fields += [(f"{m}_present", np.float32, (), False) for m in spec.modalities]
    edit_fields += [("label", np.int64, (), False)]
    urls = [f"file://{f}" for f in files]
    started, rows = time.perf_counter(), 0
    with make_batch_reader(urls, workers_count=2, schema_fields=COLUMNS, num_epochs=1,
                           transform_spec=TransformSpec(transform, edit_fields=edit_fields,
                                                        selected_fields=[f[0] for f in edit_fields])) as reader:
        for batch in reader:
            rows += len(batch.label)
    return rows, time.perf_counter() - started


FEEDS = {"resmm": feed_resmm, "dataloader": feed_dataloader, "petastorm": feed_petastorm,
         "hf_datasets": feed_hf_datasets}


if __name__ == "__main__":  # python benchmarks/feeds.py SYSTEM FILES_LIST_JSON -> one JSON line on stdout
    import json

    system, job = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    extra = {"overrides": job.get("overrides", [])} if system == "resmm" else {}
    rows, seconds = FEEDS[system](job["files"], job["classes"], job["class_counts"], **extra)
    print("RESULT " + json.dumps({"rows": rows, "seconds": seconds}), flush=True)
