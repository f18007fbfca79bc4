"""The plain recipe a user would write by hand, as resmm's reference: one small model per modality, each trained
on its own rows, fused late by summing log-probabilities. It sees resmm's decoded tensors and its exact split.

The recipe is fixed, not tuned: Adam (lr 1e-3), batch 64, class-balanced sampling, plain cross-entropy,
12 epochs. Each modality's model is the one its record names (`Modality.reference`, resmm/models/reference.py):
image and audio (the log-mel spectrogram as a 1-channel image) go through a 3-block CNN, text through a mean
EmbeddingBag over resmm's hashed token ids.

Rows are read the way resmm's validation stage reads them: unreadable files are skipped, rows with a null or
duplicate `sample_id`, a null label or a label outside `data.classes` are dropped. One difference: of several
rows sharing a `sample_id`, resmm keeps the one with the smallest Ray row hash, this module the first in file
order (both copies lie on the same side of the split unless their groups differ).
"""
from __future__ import annotations

import time
from itertools import combinations
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, WeightedRandomSampler

from resmm.sources.contract import check_group_column, check_schema, resolve_classes
from resmm.data.cells import column_cells, label_name
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.modalities import MODALITIES, resolve_lengths
from resmm.data.split import buckets_of, in_validation, split_keys
from resmm.datasets import demo
from resmm.sources.shards import ShardError, list_parquet_files, read_footers
from resmm.train.metrics import classification_metrics
from resmm.train.robustness import pattern_name, presence_patterns

EPOCHS = 12
BATCH_ROWS = 64
LR = 1e-3
THREADS = 2  # torch threads while the reference trains (restored after), so its wall time means the same anywhere
EVAL_BATCH_ROWS = 512
HEADLINE = ("unimodal: validation rows where the modality is present (as resmm's val_head_<m>_*), with `all_rows` "
            "beside it (absent modality -> the training majority class); late_fusion: every validation row; "
            "pairs: validation rows where at least one of the pair is present; patterns: every validation row "
            "with only the pattern's modalities shown (as resmm's robustness patterns)")


def build_reference_model(modality: str, spec: PreprocessSpec) -> nn.Module:
    """The modality record's reference model (`Modality.reference`: what a user would write by hand)."""
    return MODALITIES[modality].reference.build(spec.settings[modality], len(spec.classes))


# --- data ---------------------------------------------------------------------------------------------------


def read_clean_rows(url: str, spec: PreprocessSpec, configured: set | None, batch_rows: int,
                    progress: Callable = print,
                    group_column: str | None = None) -> Iterator[tuple[pa.Table, list[str]]]:
    """(rows, their label names) in parts of `batch_rows`, without the rows resmm quarantines, with the group
    column where the shards carry it. A file that fails to read part-way is dropped whole, as resmm's validation
    stage drops it."""
    fs, paths = list_parquet_files(url)
    shards, unreadable = read_footers(fs, paths)
    for bad in unreadable:
        progress(f"[reference] skipping {bad['path']}: {bad['reason']}")
    if not shards:
        raise ShardError(f"data path '{url}': none of its {len(paths)} Parquet file(s) is readable")
    check_group_column(shards, group_column)
    seen: set[str] = set()
    for shard in shards:
        check_schema(shard.schema, shard.url, spec.modalities, labelled=True)
        group = [group_column] if group_column in shard.schema.names else []
        columns = ["sample_id", "label", *spec.modalities, *group]
        parts, ids = [], set()
        try:
            with fs.open(shard.path, "rb") as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=columns):
                    table = pa.Table.from_batches([batch])
                    sample_ids = column_cells(table.column("sample_id"), table.num_rows)
                    labels = [label_name(v) for v in column_cells(table.column("label"), table.num_rows)]
                    keep = np.zeros(table.num_rows, dtype=bool)
                    for i, (sample_id, label) in enumerate(zip(sample_ids, labels)):
                        ok = (sample_id not in (None, "") and label is not None
                              and (configured is None or label in configured))
                        if ok and str(sample_id) not in seen and str(sample_id) not in ids:
                            keep[i] = True
                            ids.add(str(sample_id))
                    parts.append((table.filter(pa.array(keep)), [n for n, k in zip(labels, keep) if k]))
        except (OSError, ValueError, pa.ArrowException) as exc:
            progress(f"[reference] skipping {shard.url}: unreadable Parquet data: {exc}")
            continue
        seen.update(ids)
        yield from parts


def decode_rows(url: str, spec: PreprocessSpec, configured: set | None, batch_rows: int,
                progress: Callable = print,
                group_column: str | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every clean row of `url` decoded into memory: {<m>, <m>_present, sample_id, split_bucket (by group, else
    sample_id)}, plus the label names."""
    preprocess = BatchPreprocessor(spec)
    parts, names = [], []
    for table, labels in read_clean_rows(url, spec, configured, batch_rows, progress, group_column):
        if table.num_rows == 0:
            continue
        decoded = {k: v for k, v in preprocess({c: table.column(c) for c in table.column_names}).items()
                   if k != "label"}
        decoded["sample_id"] = np.array(table.column("sample_id").to_pylist(), dtype=object)
        decoded["split_bucket"] = buckets_of(split_keys(table, group_column))
        parts.append(decoded)
        names += labels
    if not parts:
        raise ShardError(f"data path '{url}' holds no labelled rows that resmm would train or validate on")
    keys = [*(k for m in spec.modalities for k in (m, f"{m}_present")), "sample_id", "split_bucket"]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}, names


def take(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in arrays.items()}


def with_measured_lengths(cfg, progress: Callable = print):
    """`cfg` with its `auto` lengths measured from its data, as resmm's training measures them."""
    filesystem, paths = list_parquet_files(demo.path_or_default(cfg.data.path, progress))
    return resolve_lengths(cfg, filesystem, paths)[0]


def decode_split(cfg, progress: Callable = print) -> tuple[dict, dict, list[str]]:
    """resmm's train/validation split of the configured data, decoded with resmm's preprocessor.

    Returns (train, val, classes); train and val hold `<m>` arrays of `spec.input_shape(m)` per row,
    `<m>_present` (float32 0/1), `label` (int64 class index), `sample_id` and `split_bucket`.
    """
    modalities = list(cfg.model.modalities)
    data_url = demo.path_or_default(cfg.data.path, progress)
    # Decoding does not depend on the class vocabulary, which may only be known once the labels are read.
    decode_spec = PreprocessSpec.from_config(cfg.data, modalities, ())
    configured = set(cfg.data.classes) if cfg.data.classes else None
    batch_rows = cfg.data.preprocess_batch_rows
    arrays, names = decode_rows(data_url, decode_spec, configured, batch_rows, progress, cfg.data.group_column)
    if cfg.data.val_path:
        in_val = np.zeros(len(names), dtype=bool)
        val, val_names = decode_rows(cfg.data.val_path, decode_spec, configured, batch_rows, progress)
    else:
        in_val = in_validation(arrays["split_bucket"], cfg.data.val_fraction)
        val = take(arrays, np.flatnonzero(in_val))
        val_names = [n for n, v in zip(names, in_val) if v]
    train = take(arrays, np.flatnonzero(~in_val))
    del arrays  # the split copies it; halve the peak memory before labels are mapped
    train_names = [n for n, v in zip(names, in_val) if not v]

    classes = resolve_classes(cfg.data.classes, set(train_names))
    preprocess = BatchPreprocessor(PreprocessSpec.from_config(cfg.data, modalities, classes))
    train["label"] = preprocess.label_indices(train_names)
    val["label"] = preprocess.label_indices(val_names)
    known = val["label"] >= 0  # a validation label the training side never had is unscored, as in resmm
    val = take(val, np.flatnonzero(known))
    return train, val, classes


# --- training and scoring -----------------------------------------------------------------------------------


def as_tensor(values: np.ndarray) -> torch.Tensor:
    """Token ids stay int64 (embedding lookups); every other decoded array is float32."""
    dtype = np.int64 if np.issubdtype(values.dtype, np.integer) else np.float32
    return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))


def fit(model: nn.Module, inputs: torch.Tensor, labels: np.ndarray, num_classes: int, epochs: int, seed: int,
        name: str, progress: Callable) -> nn.Module:
    """Adam, class-balanced sampling (weights 1/n_class, as many draws per epoch as rows), cross-entropy."""
    counts = np.bincount(labels, minlength=num_classes)
    sampler = WeightedRandomSampler(
        torch.as_tensor(1.0 / counts[labels], dtype=torch.double), num_samples=len(labels), replacement=True,
        generator=torch.Generator().manual_seed(seed),
    )
    targets = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum, rows = 0.0, 0
        for rows_drawn in BatchSampler(sampler, BATCH_ROWS, drop_last=False):
            index = torch.as_tensor(rows_drawn)
            loss = F.cross_entropy(model(inputs[index]), targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, rows = loss_sum + loss.item() * len(index), rows + len(index)
        progress(f"[reference] {name} epoch {epoch}/{epochs} loss {loss_sum / max(rows, 1):.3f}")
    return model


@torch.no_grad()
def log_probabilities(model: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    model.eval()
    outputs = [F.log_softmax(model(inputs[i:i + EVAL_BATCH_ROWS]), dim=1)
               for i in range(0, len(inputs), EVAL_BATCH_ROWS)]
    return torch.cat(outputs).numpy()  # (N, K)


def scores(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict:
    metrics = classification_metrics(labels, predictions, num_classes, prefix="")
    return {k: metrics.get(k) for k in ("balanced_accuracy", "accuracy", "macro_f1", "rows")}


def late_fusion(log_probs: dict[str, np.ndarray], present: dict[str, np.ndarray], fallback: int) -> np.ndarray:
    """(N,) argmax of the summed log-probabilities of the models whose modality the row has; a row with none
    of them gets `fallback` (the training majority class).

    log_probs: modality -> (N, K), present: modality -> (N,) bool.
    """
    rows = len(next(iter(present.values())))
    total = np.zeros((rows, 1), np.float32)
    covered = np.zeros(rows, dtype=bool)
    for m, scores_m in log_probs.items():
        total = total + np.where(present[m][:, None], scores_m, 0.0)  # (N, K)
        covered |= present[m]
    return np.where(covered, total.argmax(axis=1), fallback)


def train_reference(cfg, epochs: int = EPOCHS, progress: Callable = print) -> dict:
    """Train the reference on resmm's split of `cfg`'s data and score it (see HEADLINE for the rows scored)."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        cfg = with_measured_lengths(cfg, progress)
        train, val, classes = decode_split(cfg, progress)
        progress(f"[reference] decoded {len(train['label'])} training and {len(val['label'])} validation rows "
                 f"in {time.perf_counter() - started:.1f}s, classes {classes}")
        return score_reference(cfg, train, val, classes, epochs, progress) | {
            "epochs": epochs, "wall_time_s": round(time.perf_counter() - started, 1)}
    finally:
        torch.set_num_threads(threads)


def score_reference(cfg, train: dict, val: dict, classes: list[str], epochs: int, progress: Callable) -> dict:
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, classes)
    num_classes = len(classes)
    majority = int(np.bincount(train["label"], minlength=num_classes).argmax())
    y_val = val["label"]
    present = {m: val[f"{m}_present"] > 0 for m in spec.modalities}
    log_probs, unimodal = {}, {}
    for m in spec.modalities:
        if MODALITIES[m].reference is None:
            progress(f"[reference] {m}: its modality record names no reference model; left out")
            continue
        rows = np.flatnonzero(train[f"{m}_present"] > 0)
        if len(rows) == 0:
            progress(f"[reference] {m}: no training row has it; left out")
            continue
        model_started = time.perf_counter()
        torch.manual_seed(cfg.train.seed)
        model = build_reference_model(m, spec)
        fit(model, as_tensor(train[m][rows]), train["label"][rows], num_classes, epochs, cfg.train.seed,
            m, progress)
        log_probs[m] = np.zeros((len(y_val), num_classes), np.float32)
        if present[m].any():
            log_probs[m][present[m]] = log_probabilities(model, as_tensor(val[m][present[m]]))
        alone = np.where(present[m], log_probs[m].argmax(axis=1), majority)
        unimodal[m] = {
            **scores(y_val[present[m]], alone[present[m]], num_classes),
            "all_rows": scores(y_val, alone, num_classes),
            "train_rows": int(len(rows)),
            "train_time_s": round(time.perf_counter() - model_started, 1),
        }
        progress(f"[reference] {m}: balanced accuracy {unimodal[m]['balanced_accuracy']:.4f} on "
                 f"{unimodal[m]['rows']} validation rows with {m}")

    fused = late_fusion(log_probs, present, majority)
    pairs = {}
    for pair in combinations(log_probs, 2):
        covered = np.any([present[m] for m in pair], axis=0)
        predictions = late_fusion({m: log_probs[m] for m in pair}, present, majority)
        pairs[pattern_name(pair)] = scores(y_val[covered], predictions[covered], num_classes)
    patterns = {}
    for pattern in presence_patterns(list(log_probs)):
        predictions = late_fusion({m: log_probs[m] for m in pattern}, present, majority)
        patterns[pattern_name(pattern)] = scores(y_val, predictions, num_classes)
    return {
        "unimodal": unimodal,
        "late_fusion": scores(y_val, fused, num_classes),
        "pairs": pairs,
        "patterns": patterns,
        "classes": classes,
        "majority_class": classes[majority],
        "train_rows": int(len(train["label"])),
        "val_rows": int(len(y_val)),
        "headline": HEADLINE,
    }
