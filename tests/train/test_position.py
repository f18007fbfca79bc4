"""A mid-epoch position: feeding the rest of an epoch after a restart trains each row's remaining copies only,
whatever order the restarted stream comes in."""
import numpy as np
import torch

from resmm.data.feed import fed_batches
from resmm.data.resample import drawn_copies
from resmm.train.position import EpochPosition, RowTally

ROWS, BATCH = 600, 16
RATES = torch.tensor([0.4, 1.0, 3.5])  # undersampled, kept, oversampled


class IdShard:
    """Stands in for a Ray DataIterator over rows with ids; `order` permutes the stream (a restart's order)."""

    def __init__(self, order_seed: int):
        ids = torch.arange(ROWS, dtype=torch.int64) * 7_919 + 13
        order = torch.randperm(ROWS, generator=torch.Generator().manual_seed(order_seed))
        self.ids, self.labels = ids[order], (ids[order] % 3)

    def iter_torch_batches(self, batch_size, **_):
        for start in range(0, ROWS, batch_size):
            yield {"row_id": self.ids[start:start + batch_size], "label": self.labels[start:start + batch_size]}


def feed(shard, position=None):
    return fed_batches(shard, BATCH, "cpu", RATES, 1.0, torch.Generator().manual_seed(0), shuffle_seed=0,
                       copies_seed=42, trained_before=position.trained_copies if position else None)


def tally_of(batches) -> dict:
    tally = RowTally()
    for batch in batches:
        tally.add(batch["row_id"])
    return dict(zip(*(a.tolist() for a in tally.counts())))


def test_a_rows_copies_depend_on_its_id_and_the_seed_only():
    ids, labels = torch.arange(1000) * 31, torch.arange(1000) % 3
    copies = drawn_copies(ids, labels, RATES, 1.0, seed=5)
    perm = torch.randperm(1000)
    assert torch.equal(drawn_copies(ids[perm], labels[perm], RATES, 1.0, seed=5), copies[perm])
    assert not torch.equal(drawn_copies(ids, labels, RATES, 1.0, seed=6), copies)
    for c in range(3):  # Poisson means, within 4 standard errors
        mean = copies[labels == c].double().mean().item()
        assert abs(mean - RATES[c].item()) < 4 * (RATES[c].item() / (labels == c).sum().item()) ** 0.5


def checkpointed(batches: int) -> EpochPosition:
    """The position a mid-epoch checkpoint holds after `batches` steps of the first attempt."""
    first_attempt, tally = feed(IdShard(order_seed=0)), RowTally()
    for _ in range(batches):
        tally.add(next(first_attempt)["row_id"])
    return EpochPosition(3, *tally.counts(), sums={})


def trained_twice(position: EpochPosition, after_restart: dict, undisturbed: dict) -> tuple[int, int]:
    """(copies beyond the undisturbed epoch's, rows whose copies differ from it) of checkpoint + restart."""
    resumed = dict(after_restart)
    for row, n in zip(position.row_ids.tolist(), position.copies.tolist()):
        resumed[row] = resumed.get(row, 0) + n
    twice = sum(max(0, n - undisturbed.get(row, 0)) for row, n in resumed.items())
    return twice, sum(abs(resumed.get(r, 0) - undisturbed.get(r, 0)) for r in set(resumed) | set(undisturbed))


def test_resumed_epoch_feeds_what_is_left_and_nothing_twice():
    undisturbed = tally_of(feed(IdShard(order_seed=0)))
    position = checkpointed(20)
    after_restart = tally_of(feed(IdShard(order_seed=1), position))  # a restarted stream comes in another order
    twice, differing = trained_twice(position, after_restart, undisturbed)
    assert position.rows == 20 * BATCH
    assert twice < BATCH  # only where the two attempts' dropped last partial batches differ
    assert differing < 2 * BATCH


def test_restarting_the_epoch_from_its_first_row_would_train_rows_twice():
    """The check above can fail: without the position, a restart feeds the checkpointed rows again."""
    undisturbed = tally_of(feed(IdShard(order_seed=0)))
    position = checkpointed(20)
    twice, _ = trained_twice(position, tally_of(feed(IdShard(order_seed=1))), undisturbed)
    assert twice >= 20 * BATCH - BATCH


def test_position_round_trips_through_a_weights_only_checkpoint(tmp_path):
    position = EpochPosition(2, np.array([3, 9, 27]), np.array([1, 2, 1]),
                             {"rows": 4.0, "loss": 1.5, "batches": 1.0, "steps": 1, "components": {"a": 0.5},
                              "fed": [1.0, 3.0]})
    torch.save({"position": position.state_dict()}, tmp_path / "state.pt")
    restored = EpochPosition.from_state(torch.load(tmp_path / "state.pt", weights_only=True)["position"])
    assert restored.epoch == 2 and restored.rows == 4 and restored.sums == position.sums
    assert restored.trained_copies(torch.tensor([9, 4, 27, 3])).tolist() == [2, 0, 1, 1]
