"""The worker-side feeder streams: it never pulls the whole shard before training starts."""
import torch

from resmm.config import load_config
from resmm.train.driver import configure_execution, ingest_options
from resmm.data.feed import fed_batches


class CountingShard:
    """Stands in for a Ray DataIterator: yields batches on demand and counts how many were pulled."""

    def __init__(self, batches: int, rows: int, labels: int = 2):
        self.batches, self.rows, self.labels, self.pulled = batches, rows, labels, 0

    def iter_torch_batches(self, **kwargs):
        for i in range(self.batches):
            self.pulled += 1
            yield {"label": torch.arange(self.rows) % self.labels, "x": torch.full((self.rows,), float(i))}


def test_resampled_feed_yields_after_pulling_only_what_it_needs():
    shard = CountingShard(batches=100, rows=32)
    rates = torch.tensor([1.0, 1.0])
    feed = fed_batches(shard, 32, "cpu", rates, 1.0, torch.Generator().manual_seed(0), shuffle_seed=0)
    first = next(feed)
    assert len(first["label"]) == 32
    assert shard.pulled <= 3  # a stream, not a materialised shard


def test_balanced_rates_on_a_10_to_1_stream_feed_both_classes_alike():
    shard = CountingShard(batches=50, rows=22, labels=11)  # relabelled below to a 10:1 binary stream
    original = shard.iter_torch_batches

    def skewed(**kwargs):
        for batch in original(**kwargs):
            batch["label"] = (batch["label"] == 0).long()  # class 1: 2 rows in 22, class 0: 20 rows
            yield batch

    shard.iter_torch_batches = skewed
    rates = torch.tensor([0.55, 5.5])  # balanced: 10:1 counts -> equal expected copies
    fed = torch.cat([b["label"] for b in fed_batches(shard, 32, "cpu", rates, 1.0,
                                                    torch.Generator().manual_seed(0), shuffle_seed=0)])
    share = fed.float().mean().item()
    assert abs(share - 0.5) < 0.08, share


def test_data_label_selector_reaches_train_ingest_options():
    cfg = load_config(None, ["data.label_selector={resmm.io/role: data}"])
    assert ingest_options(cfg).label_selector == {"resmm.io/role": "data"}
    assert getattr(ingest_options(load_config()), "label_selector", None) in (None, {})


def test_object_store_budget_reaches_train_ingest_and_a_later_config_without_one_resets_it():
    import ray.data

    options = ray.data.ExecutionOptions()
    configure_execution(options, load_config(None, ["data.object_store_budget_mb=512"]))
    assert options.resource_limits.object_store_memory == 512 * 2**20
    assert ingest_options(load_config(None, ["data.object_store_budget_mb=256"])).resource_limits.object_store_memory \
        == 256 * 2**20
    configure_execution(options, load_config())
    assert options.resource_limits.object_store_memory == float("inf")


def test_prefetch_batches_reach_iter_torch_batches():
    seen = {}

    class Shard:
        def iter_torch_batches(self, **kwargs):
            seen.update(kwargs)
            return iter([])

    list(fed_batches(Shard(), 32, "cpu", None, 1.0, torch.Generator(), shuffle_seed=0, prefetch_batches=32))
    assert seen["batch_size"] == 512 and seen["prefetch_batches"] == 2  # 32 batches of 32 rows ahead: 2 pulls


def test_pulled_chunks_are_cut_into_full_batches_in_order():
    shard = CountingShard(batches=5, rows=100)  # 500 rows arrive in pulls of 100
    batches = list(fed_batches(shard, 64, "cpu", None, 1.0, torch.Generator(), shuffle_seed=0))
    assert [len(b["label"]) for b in batches] == [64] * 7  # 448 rows; the last 52 are dropped, as drop_last did
    assert torch.equal(torch.cat([b["x"] for b in batches]), torch.arange(5).repeat_interleave(100)[:448].float())


def test_moddrop_hides_modalities_from_the_fusion_only_and_never_all_of_a_row():
    import torch

    from resmm.modalities.transforms import drop_modalities

    modalities = ["image", "text", "audio"]
    batch = {f"{m}_present": torch.ones(200) for m in modalities}
    batch["audio_present"][:50] = 0.0
    out = drop_modalities(batch, modalities, 0.6, torch.Generator().manual_seed(0))
    fused = torch.stack([out[f"{m}_fusion_present"] for m in modalities], 1)
    assert all(torch.equal(out[f"{m}_present"], batch[f"{m}_present"]) for m in modalities)  # heads keep their rows
    assert 0.3 < 1 - fused[50:].mean() < 0.6  # about 60% hidden, less where a row would lose everything
    assert (fused.sum(1) >= 1).all() and (fused[:50, 2] == 0).all()  # never all; absent stays absent


def test_a_feed_that_stops_delivering_fails_within_its_deadline():
    import time

    import pytest

    from resmm.data.feed import FeedStalled, within_deadline

    def stalls_after_one():
        yield 1
        time.sleep(30)  # a Ray Data task waiting for a node that never comes
        yield 2

    feed = within_deadline(stalls_after_one(), 0.5)
    assert next(feed) == 1
    started = time.monotonic()
    with pytest.raises(FeedStalled, match="no rows arrived for"):
        next(feed)
    assert time.monotonic() - started < 5
    assert list(within_deadline(iter(range(5)), 0.5)) == [0, 1, 2, 3, 4]


def test_a_feed_error_reaches_the_training_loop_through_the_deadline():
    import pytest

    from resmm.data.feed import within_deadline

    def breaks():
        yield 1
        raise OSError("shard vanished")

    with pytest.raises(OSError, match="shard vanished"):
        list(within_deadline(breaks(), 5))


class SeededShard:
    """Stands in for a Ray DataIterator whose epochs differ by their shuffle seed: every chunk carries the seed
    of the stream that pulled it, and each stream's start is recorded."""

    def __init__(self, chunks: int, rows: int = 64):
        self.chunks, self.rows, self.started = chunks, rows, []

    def iter_torch_batches(self, local_shuffle_seed, **_):
        self.started.append(local_shuffle_seed)
        for i in range(self.chunks):
            yield {"label": torch.zeros(self.rows, dtype=torch.int64),
                   "seed": torch.full((self.rows,), local_shuffle_seed), "chunk": torch.full((self.rows,), i)}


def wait_for(condition, seconds: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_every_epochs_stream_starts_before_the_trainer_asks_for_it_and_none_after_the_last():
    from resmm.data.feed import EpochPulls

    shard = SeededShard(chunks=3)
    pulls = EpochPulls(shard, {4: 40, 5: 50}, 64, "cpu")
    assert wait_for(lambda: shard.started == [40])  # the first epoch's stream began while the worker set up
    first = list(pulls.chunks(4))
    assert [int(c["seed"][0]) for c in first] == [40] * 3 and [int(c["chunk"][0]) for c in first] == [0, 1, 2]
    assert wait_for(lambda: shard.started == [40, 50])  # epoch 5's stream began while epoch 4 was being trained
    second = list(pulls.chunks(5))
    assert [int(c["seed"][0]) for c in second] == [50] * 3 and [int(c["chunk"][0]) for c in second] == [0, 1, 2]
    assert shard.started == [40, 50]
    pulls.close()


def test_an_epoch_left_early_does_not_leak_into_the_next_and_close_ends_the_thread():
    import threading

    from resmm.data.feed import EpochPulls

    def feed_threads() -> set:  # other tests' feeds may still be winding down
        return {t for t in threading.enumerate() if t.name == "resmm-feed"}

    before = feed_threads()
    shard = SeededShard(chunks=6)
    pulls = EpochPulls(shard, {0: 7, 1: 8, 2: 9}, 64, "cpu")
    assert int(next(pulls.chunks(0))["seed"][0]) == 7  # the trainer leaves epoch 0 after one chunk
    assert {int(c["seed"][0]) for c in pulls.chunks(1)} == {8} and len(shard.started) >= 2
    assert [int(c["chunk"][0]) for c in [next(pulls.chunks(2))]] == [0]
    assert len(feed_threads() - before) == 1
    pulls.close()
    assert wait_for(lambda: not feed_threads() - before)
    assert shard.started == [7, 8, 9]


def test_epoch_pulls_feed_the_same_batches_as_one_epochs_feed():
    from resmm.data.feed import EpochPulls, batches_of

    shard = CountingShard(batches=5, rows=100)
    direct = list(fed_batches(shard, 64, "cpu", None, 1.0, torch.Generator(), shuffle_seed=0))
    pulls = EpochPulls(shard, {0: 0}, 64, "cpu")
    ahead = list(batches_of(pulls.chunks(0), 64, None, 1.0, torch.Generator()))
    pulls.close()
    assert len(ahead) == len(direct) == 7
    assert all(torch.equal(a["x"], d["x"]) for a, d in zip(ahead, direct))
