"""The ingest paths being compared. Each reads the same Parquet shards, applies resmm's own transforms (decode,
tokenise, log-mel), and hands the training loop the same thing: batches of BATCH rows, model-input dtypes
(float32 pixels and log-mel, int64 tokens), with balanced resampling copies drawn (`fed`), for EPOCHS epochs.

A feed returns one record per epoch: rows delivered and the wall-clock start and end (time.time(), so that the
parent can match them with its CPU samples). Kept free of torch / ray imports at module level so that the
Petastorm feed runs in its own old-pyarrow venv.

    python benchmarks/feeds.py SYSTEM JOB_JSON       -> one `RESULT {...}` line on stdout
    python benchmarks/feeds.py fill JOB_JSON         -> fills job["cache"] (for dataloader_on_cache)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COLUMNS = ["sample_id", "label", "image", "text", "audio"]
BATCH_ROWS = 256  # rows per decode call
BATCH = 64  # rows per delivered batch, every feed


def default_spec(classes):
    from resmm.modalities.spec import PreprocessSpec

    from resmm.config import DataConfig

    # The demo's lengths, fixed so that every feed decodes the same arrays (`auto` would sample the shards).
    data = DataConfig(text={"max_tokens": 48}, audio={"max_seconds": 1.0})
    return PreprocessSpec.from_config(data, ("image", "text", "audio"), classes)


class Resampler:
    """The same per-batch work for every feed: balanced Poisson copies (as data.resample=balanced feeds them)."""

    def __init__(self, class_counts: list[int]):
        import numpy as np
        import torch

        from resmm.data.resample import sampling_rates, target_shares

        counts = np.asarray(class_counts)
        self.rates = torch.tensor(sampling_rates(target_shares("balanced", counts, 0, 1, None), counts,
                                                 int(counts.sum())), dtype=torch.float32)
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, batch: dict) -> int:
        from resmm.data.resample import resample_rows

        index = resample_rows(batch["label"], self.rates, 1.0, self.generator)
        fed = {k: v[index] for k, v in batch.items()}
        return len(fed["label"])


def epochs_of(make_batches, epochs: int, resample: Resampler, to_model=None) -> list[dict]:
    """Iterate `make_batches(epoch)` for each epoch, timing each; `to_model` widens cached features first."""
    records = []
    for epoch in range(epochs):
        started, rows = time.time(), 0
        for batch in make_batches(epoch):
            if to_model is not None:
                batch = to_model(batch)
            resample(batch)
            rows += len(batch["label"])
        records.append({"rows": rows, "start": started, "end": time.time()})
    return records


def torch_batches(batch: dict) -> dict:
    import torch

    return {k: torch.as_tensor(v) for k, v in batch.items()}


def _sliced(batch: dict):
    """A decoded batch in BATCH-row slices (the unit every feed delivers)."""
    rows = len(batch["label"])
    for start in range(0, rows, BATCH):
        yield {k: v[start: start + BATCH] for k, v in batch.items()}


def _source(files: list[str]):
    from pipelines.ingest import Source
    from resmm.sources.shards import open_filesystem, read_footers

    fs, _ = open_filesystem(files[0])
    return Source(url=str(Path(files[0]).parent), filesystem=fs, shards=tuple(read_footers(fs, files)[0]))


def _fill(files: list[str], spec, cache: str) -> object:
    """The validation pass with the cache on (what a training run does first): decodes and stores every shard."""
    from pipelines.feature_cache import CacheTarget
    from pipelines.validation import Rules, validate_source

    return validate_source(_source(files), spec, Rules(True, False, None, None), batch_rows=BATCH_ROWS,
                           progress=lambda _: None, cache=CacheTarget.at(cache))


def feed_resmm(job: dict) -> list[dict]:
    """resmm's training feed at the defaults (data.cache=on), from a cold cache: epoch 1 is the validation pass
    that decodes and stores every shard plus the first read of the entries; later epochs read entries only.
    Ray Data read → unpack → a Ray Train worker's own pulls (resmm.data.feed.EpochPulls: 512 rows at a time,
    each epoch's stream started as soon as the one before it is pulled) → cast and normalise, batches of 64 →
    resampling."""
    from pipelines.feature_cache import read_cached_split

    cfg, spec = _resmm_setup(job)
    startup_s = ray_data_startup()
    filled_at = time.time()

    def dataset():
        validation = _fill(job["files"], spec, job["cache"])
        return read_cached_split(list(validation.entries), job["cache"], spec, validation=None, val_fraction=0.1)

    records = epochs_of(_pulled_epochs(dataset, cfg, spec, job["epochs"]), job["epochs"],
                        Resampler(job["class_counts"]))
    records[0]["start"], records[0]["startup_s"] = filled_at, startup_s
    return records


def _resmm_setup(job: dict):
    """A fresh local Ray instance and Ray Data context, as a run sets them up: (the run's config, the spec)."""
    from pipelines.runtime import configure_data_context, connect_ray
    from resmm.config import load_config

    connect_ray()
    cfg = load_config(None, list(job.get("overrides", [])))
    configure_data_context(cfg)
    return cfg, default_spec(job["classes"])


def _pulled_epochs(make_dataset, cfg, spec, epochs: int):
    """make_batches for epochs_of: the dataset is made in epoch 1's clock, then pulled by one EpochPulls for
    every epoch, as a training worker pulls its shard."""
    import torch

    from resmm.data.feed import EpochPulls, batches_of
    from resmm.modalities.transforms import WorkerTransforms

    pulls = None

    def batches(epoch):
        nonlocal pulls
        if pulls is None:
            pulls = EpochPulls(make_dataset(), {e: e for e in range(epochs)}, BATCH, "cpu",
                               prefetch_batches=cfg.data.prefetch_batches)
        return batches_of(pulls.chunks(epoch), BATCH, None, 1.0, torch.Generator(),
                          expand=WorkerTransforms(spec).expand)

    return batches


def ray_data_startup() -> float:
    """Seconds of Ray Data's first job in a fresh Ray instance (a no-op task per CPU), timed apart from epoch 1:
    a fixed cost per run, whatever the rows (its actors and first worker processes start; benchmarks/ingest.py
    reports epoch 1 with and without it)."""
    import ray

    started = time.time()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    ray.data.range(cpus, override_num_blocks=cpus).map_batches(lambda batch: batch, batch_size=None).materialize()
    return time.time() - started


def feed_resmm_cache_off(job: dict) -> list[dict]:
    """resmm's feed with data.cache=off: every epoch decodes the shards again in Ray Data tasks (one per shard,
    the validation pass's own decode), pulled as feed_resmm pulls its entries."""
    from pipelines.feature_cache import decoded_split

    cfg, spec = _resmm_setup(job)

    def dataset():
        return decoded_split(_source(job["files"]), spec, validation=None, val_fraction=0.1, batch_rows=BATCH_ROWS)

    return epochs_of(_pulled_epochs(dataset, cfg, spec, job["epochs"]), job["epochs"],
                     Resampler(job["class_counts"]))


class _Units:
    """(file, row group) units split across DataLoader workers."""

    def __init__(self, files):
        import pyarrow.parquet as pq

        self.units = [(f, g) for f in files for g in range(pq.ParquetFile(f).num_row_groups)]

    def mine(self):
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        return self.units if info is None else self.units[info.id:: info.num_workers]


def feed_dataloader(job: dict) -> list[dict]:
    """A plain PyTorch DataLoader (2 workers) over pyarrow that decodes every epoch with resmm's transforms."""
    import pyarrow.parquet as pq
    import torch.utils.data

    from resmm.modalities.spec import BatchPreprocessor

    spec = default_spec(job["classes"])

    class Decoding(_Units, torch.utils.data.IterableDataset):
        def __iter__(self):
            preprocess = BatchPreprocessor(spec)
            for path, group in self.mine():
                for part in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, row_groups=[group],
                                                              columns=COLUMNS):
                    yield from _sliced(preprocess({c: part.column(c) for c in part.schema.names}))

    loader = torch.utils.data.DataLoader(Decoding(job["files"]), batch_size=None, num_workers=2, prefetch_factor=4)
    return epochs_of(lambda epoch: loader, job["epochs"], Resampler(job["class_counts"]))


def feed_dataloader_on_cache(job: dict) -> list[dict]:
    """The same DataLoader reading resmm's cache entries instead of the shards: what a user who kept resmm's
    cache but wrote their own loop would get. Workers unpack the entries (resmm's own unpack_entries, without
    quarantine or split); the loop casts and normalises."""
    import pyarrow.parquet as pq
    import torch.utils.data

    from pipelines.feature_cache import unpack_entries
    from resmm.modalities.compact import layout_of
    from resmm.modalities.transforms import expand_batch

    spec = default_spec(job["classes"])
    layout = layout_of(spec)

    class Cached(_Units, torch.utils.data.IterableDataset):
        def __iter__(self):
            for path, group in self.mine():
                table = pq.ParquetFile(path).read_row_group(group, columns=["label", "pattern", *spec.modalities])
                yield from _sliced(unpack_entries(table, spec=spec, layout=layout))

    loader = torch.utils.data.DataLoader(Cached(job["entries"]), batch_size=None, num_workers=2, prefetch_factor=4)
    return epochs_of(lambda epoch: loader, job["epochs"], Resampler(job["class_counts"]),
                     to_model=lambda b: expand_batch(torch_batches(b), spec))


def feed_hf_datasets(job: dict) -> list[dict]:
    """Hugging Face `datasets` with its own fingerprinted map cache, from cold: epoch 1 converts the shards to
    Arrow and runs resmm's transforms as a batched map (2 processes) into its cache; every epoch reads that
    cache through a DataLoader (2 workers) in shuffled batches of BATCH rows."""
    import datasets
    import numpy as np
    import torch.utils.data

    from resmm.modalities.spec import BatchPreprocessor

    spec = default_spec(job["classes"])
    preprocess = BatchPreprocessor(spec)
    features = datasets.Features({
        "image": datasets.Array3D(spec.input_shape("image"), "float32"),
        "text": datasets.Sequence(datasets.Value("int64"), length=spec.input_shape("text")[0]),
        "audio": datasets.Array2D(spec.input_shape("audio"), "float32"),
        **{f"{m}_present": datasets.Value("float32") for m in spec.modalities},
        "label": datasets.Value("int64"),
    })
    started, table = time.time(), None

    def batches(epoch):
        nonlocal table
        if table is None:
            raw = datasets.load_dataset("parquet", data_files=job["files"], split="train", cache_dir=job["cache"])
            table = raw.map(lambda b: preprocess(b), batched=True, batch_size=BATCH_ROWS, num_proc=2,
                            remove_columns=raw.column_names, features=features).with_format("numpy")
        sampler = torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(table, generator=torch.Generator().manual_seed(epoch)), BATCH, False)
        loader = torch.utils.data.DataLoader(table, batch_size=None, sampler=sampler, num_workers=2,
                                             collate_fn=lambda b: {k: np.asarray(v) for k, v in b.items()})
        return (torch_batches(b) for b in loader)

    records = epochs_of(batches, job["epochs"], Resampler(job["class_counts"]))
    records[0]["start"] = started
    return records


def feed_petastorm(job: dict) -> list[dict]:
    """Petastorm 0.13.1 `make_batch_reader` (2 reader workers) with resmm's transforms in a TransformSpec, as
    its documentation recommends; it decodes every epoch."""
    import numpy as np
    from petastorm import make_batch_reader
    from petastorm.transform import TransformSpec

    from resmm.modalities.spec import BatchPreprocessor

    spec = default_spec(job["classes"])
    preprocess = BatchPreprocessor(spec)

    def transform(frame):
        import pandas as pd

        out = preprocess({c: frame[c].tolist() for c in COLUMNS})
        return pd.DataFrame({k: list(np.ascontiguousarray(v)) for k, v in out.items()})

    fields = [(m, np.float32 if m != "text" else np.int64, spec.input_shape(m), False) for m in spec.modalities]
    fields += [(f"{m}_present", np.float32, (), False) for m in spec.modalities] + [("label", np.int64, (), False)]
    urls = [f"file://{f}" for f in job["files"]]

    def batches(epoch):
        with make_batch_reader(urls, workers_count=2, schema_fields=COLUMNS, num_epochs=1, seed=epoch,
                               transform_spec=TransformSpec(transform, edit_fields=fields,
                                                            selected_fields=[f[0] for f in fields])) as reader:
            for group in reader:
                yield from _sliced(torch_batches({f[0]: np.stack(getattr(group, f[0])) if f[2] else
                                                  getattr(group, f[0]) for f in fields}))

    return epochs_of(batches, job["epochs"], Resampler(job["class_counts"]))


FEEDS = {"resmm": feed_resmm, "resmm_cache_off": feed_resmm_cache_off, "dataloader": feed_dataloader, "dataloader_on_cache": feed_dataloader_on_cache,
         "hf_datasets": feed_hf_datasets, "petastorm": feed_petastorm}


if __name__ == "__main__":
    import json

    system, job = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    if system == "fill":
        from pipelines.runtime import connect_ray

        connect_ray()
        filled = _fill(job["files"], default_spec(job["classes"]), job["cache"])
        print("RESULT " + json.dumps({"entries": list(filled.entries)}), flush=True)
    else:
        print("RESULT " + json.dumps({"epochs": FEEDS[system](job)}), flush=True)
