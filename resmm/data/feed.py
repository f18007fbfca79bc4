"""What the training worker feeds the model each epoch: the streamed rows resampled per class (Poisson copies);
augmentation and ModDrop follow in resmm.modalities.transforms. A row's copies follow from its id and the epoch's
seed (`row_id`, which both training streams carry); the order of the copies, augmentation and ModDrop come from
the epoch's generator."""
from __future__ import annotations

import queue
import threading

import numpy as np
import torch

from resmm.data.resample import drawn_copies, resample_rows, sampling_rates, target_shares


def epoch_rates(data_cfg, classes, class_counts: list[int], rows: int, epoch: int,
                epochs: int) -> tuple[torch.Tensor | None, float]:
    """Per-class expected copies for this epoch (None: feed every row once), and the unlabeled rows' rate."""
    epoch_rows = data_cfg.epoch_rows or rows
    if data_cfg.resample == "none" and data_cfg.class_weights is None and epoch_rows == rows:
        return None, 1.0
    weights = None
    if data_cfg.class_weights is not None:
        weights = [data_cfg.class_weights.get(c, 0.0) for c in classes]
    shares = target_shares(data_cfg.resample, np.asarray(class_counts), epoch, epochs, weights)
    labelled_rows = max(1, sum(class_counts))
    rates = sampling_rates(shares, np.asarray(class_counts), int(epoch_rows * labelled_rows / max(rows, 1)))
    return torch.tensor(rates, dtype=torch.float32), epoch_rows / max(rows, 1)


# Rows per pull from Ray Data. Ray's iterator costs a fixed amount of Python per batch, run in prefetch threads
# that share the GIL with the training step, so small pulls cap a cached feed near 10k rows/s on 2 cores; pulls
# of 512 rows, sliced here, double that (benchmarks/results/). Slicing a pulled chunk costs views only.
PULL_ROWS = 512


STALL_MESSAGE = ("no rows arrived for {minutes:g} min (data.stall_timeout_minutes): Ray Data cannot run its tasks; "
                 "are nodes that match data.label_selector alive?")


class FeedStalled(RuntimeError):
    """No batch arrived within the stall timeout: a lost data node that nothing replaced, say."""


class PulledAhead:
    """An iterator over `items`, which a thread pulls from construction on, at most two ahead of the consumer;
    FeedStalled when none arrives within `seconds` (None: wait for ever). `close()` stops the thread within a
    second."""

    _END = object()

    def __init__(self, items, seconds: float | None):
        self._handoff: queue.Queue = queue.Queue(maxsize=2)
        self._stop, self._seconds, self._over = threading.Event(), seconds, False
        threading.Thread(target=self._pull, args=(items,), daemon=True, name="resmm-feed").start()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._handoff.put(item, timeout=1.0)
                return
            except queue.Full:
                continue

    def _pull(self, items) -> None:
        try:
            for item in items:
                self._put(item)
                if self._stop.is_set():
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def __iter__(self):
        return self

    def __next__(self):
        if self._over:
            raise StopIteration
        try:
            item = self._handoff.get(timeout=self._seconds or None)
        except queue.Empty:
            raise FeedStalled(STALL_MESSAGE.format(minutes=self._seconds / 60)) from None
        self._over = item is self._END or isinstance(item, BaseException)
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()


def within_deadline(items, seconds: float | None):
    """`items`, pulled ahead by a thread (PulledAhead) when `seconds` bounds the wait for each (None: wait for ever,
    and pull in this thread).

    Ray Data waits without limit for a node that can run its tasks (one matching `data.label_selector`), so a
    data node lost for good would hang the job; this bounds the wait."""
    if not seconds:
        yield from items
        return
    pulled = PulledAhead(items, seconds)
    try:
        yield from pulled
    finally:
        pulled.close()


def pulled_chunks(shard, batch_size: int, device, shuffle_seed: int, prefetch_batches: int = 1):
    """One epoch of the shard (a Ray DataIterator or Dataset) in pulls of PULL_ROWS rows (or one batch if larger),
    shuffled locally; `prefetch_batches` batches' worth of rows are fetched ahead."""
    pull = max(batch_size, PULL_ROWS // batch_size * batch_size)
    return shard.iter_torch_batches(
        batch_size=pull, device=device, local_shuffle_buffer_size=2 * pull, local_shuffle_seed=shuffle_seed,
        prefetch_batches=max(1, prefetch_batches * batch_size // pull) if prefetch_batches else 0,
    )


class EpochPulls:
    """A training worker's pulls, epoch after epoch, by one thread that starts the first epoch's stream on
    construction and the next epoch's as soon as it has pulled this epoch's last chunk. Ray Data's start of an
    epoch (planning, the first read tasks and blocks: 0.3-0.5 s on 2 CPUs, more for the first; the data stall of a
    cached feed) then overlaps the worker's set-up, or the end of the epoch before and the validation between
    them, instead of stalling the first step of every epoch, which matters most on a GPU, where an epoch takes
    seconds.

    `shuffle_seeds` maps each epoch to train, in order, to its local shuffle seed. At most the chunks queued in
    the handoff (two) are held beyond Ray's own prefetch; an epoch the trainer left early is pulled to its end
    (every split of a streaming split must end an epoch before the next starts) and its rest is dropped."""

    def __init__(self, shard, shuffle_seeds: dict[int, int], batch_size: int, device, prefetch_batches: int = 1,
                 stall_seconds: float | None = None):
        def tagged():
            for epoch, seed in shuffle_seeds.items():
                for chunk in pulled_chunks(shard, batch_size, device, seed, prefetch_batches):
                    yield epoch, chunk
                yield epoch, None  # the epoch's end

        self._pulled = PulledAhead(tagged(), stall_seconds)  # the first epoch's stream starts now

    def chunks(self, epoch: int):
        """This epoch's chunks, in the order they were pulled."""
        for pulled_epoch, chunk in self._pulled:
            if pulled_epoch < epoch:  # the rest of an epoch left early
                continue
            if pulled_epoch > epoch:
                raise RuntimeError(f"epoch {epoch} was asked for after epoch {pulled_epoch}'s pulls began")
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        """Stop pulling (the thread ends within a second); an epoch started ahead is left unread."""
        self._pulled.close()


def fed_batches(shard, batch_size: int, device, rates: torch.Tensor | None, unlabeled_rate: float,
                generator: torch.Generator, shuffle_seed: int, prefetch_batches: int = 1, expand=None,
                copies_seed: int = 0, trained_before=None, on_drawn=None, stall_seconds: float | None = None):
    """One epoch of `shard` (pulled_chunks), fed by `batches_of`; no chunk for `stall_seconds`: FeedStalled."""
    chunks = within_deadline(pulled_chunks(shard, batch_size, device, shuffle_seed, prefetch_batches), stall_seconds)
    return batches_of(chunks, batch_size, rates, unlabeled_rate, generator, expand, copies_seed, trained_before,
                      on_drawn)


def batches_of(chunks, batch_size: int, rates: torch.Tensor | None, unlabeled_rate: float,
               generator: torch.Generator, expand=None, copies_seed: int = 0, trained_before=None, on_drawn=None):
    """One pass over an epoch's pulled chunks as full batches of `batch_size` rows (a last partial batch is
    dropped); with `rates`, each streamed row is fed k ~ Poisson(rate[label]) times (see resmm.data.resample).

    Rows stream: at most one pulled chunk is buffered here. `expand`
    (resmm.modalities.transforms.WorkerTransforms.expand) widens each chunk of cached compact features to model
    inputs on the chunk's device as it arrives.

    Rows with a `row_id` draw their copies from it and `copies_seed` (the same on every worker); then
    `trained_before(row_ids)` (copies already trained in this epoch, before a restart) are left out, and
    `on_drawn(row_ids, copies)` sees every streamed row's draw."""
    pending: dict | None = None
    for chunk in chunks:
        if expand is not None:
            chunk = expand(chunk)
        index = fed_index(chunk, rates, unlabeled_rate, generator, copies_seed, trained_before, on_drawn)
        if index is not None:
            chunk = {k: v[index.to(v.device)] for k, v in chunk.items()}
        if pending is not None and len(pending["label"]):  # a partial batch left from the last chunk
            chunk = {k: torch.cat([pending[k], chunk[k]]) for k in chunk}
        pending = chunk
        start = 0
        while len(pending["label"]) - start >= batch_size:
            yield {k: v[start: start + batch_size] for k, v in pending.items()}
            start += batch_size
        pending = {k: v[start:] for k, v in pending.items()}


def fed_index(chunk: dict, rates, unlabeled_rate: float, generator: torch.Generator, copies_seed: int,
              trained_before, on_drawn) -> torch.Tensor | None:
    """Row indices of the chunk to feed, each row repeated by its copies and shuffled (None: every row once,
    as streamed)."""
    if "row_id" not in chunk:  # a stream without ids (benchmark feeds): copies from the generator
        return None if rates is None else resample_rows(chunk["label"].cpu(), rates, unlabeled_rate, generator)
    if rates is None and trained_before is None and on_drawn is None:
        return None
    copies = drawn_copies(chunk["row_id"], chunk["label"], rates, unlabeled_rate, copies_seed)
    if on_drawn is not None:
        on_drawn(chunk["row_id"], copies)
    if trained_before is not None:
        copies = (copies - trained_before(chunk["row_id"])).clamp(min=0)
    index = torch.repeat_interleave(torch.arange(len(copies)), copies)
    return index[torch.randperm(len(index), generator=generator)]
