"""Stream resampling: the target shares, and Poisson copy counts that deliver them."""
import numpy as np
import pytest
import torch

from resmm.data.resample import resample_rows, sampling_rates, target_shares

COUNTS = np.array([1000, 100])


@pytest.mark.parametrize("strategy, expected", [("none", [10 / 11, 1 / 11]), ("balanced", [0.5, 0.5]),
                                                ("sqrt", [np.sqrt(10) / (np.sqrt(10) + 1), 1 / (np.sqrt(10) + 1)])])
def test_target_shares(strategy, expected):
    np.testing.assert_allclose(target_shares(strategy, COUNTS), expected)


def test_progressive_moves_from_instance_to_class_balanced():
    first = target_shares("progressive", COUNTS, epoch=0, epochs=5)
    last = target_shares("progressive", COUNTS, epoch=4, epochs=5)
    np.testing.assert_allclose(first, target_shares("none", COUNTS))
    np.testing.assert_allclose(last, [0.5, 0.5])
    middle = target_shares("progressive", COUNTS, epoch=2, epochs=5)
    assert first[1] < middle[1] < last[1]


def test_explicit_class_weights_and_unseen_classes():
    np.testing.assert_allclose(target_shares("none", COUNTS, class_weights=[1.0, 10.0]), [0.5, 0.5])
    assert target_shares("balanced", np.array([5, 0, 5]))[1] == 0.0


def test_poisson_copies_feed_balanced_classes_from_a_10_to_1_stream():
    labels = torch.tensor([0] * 1000 + [1] * 100)
    rates = torch.tensor(sampling_rates(target_shares("balanced", COUNTS), COUNTS, epoch_rows=1100))
    g = torch.Generator().manual_seed(0)
    fed = torch.cat([labels[resample_rows(labels[i:i + 64], rates, 1.0, g) + i] for i in range(0, 1100, 64)])
    counts = torch.bincount(fed, minlength=2).double()
    # Expected 550 each; Poisson sd ≈ 23, so ±10% is over 2 sd.
    assert abs(counts[0] - 550) < 55 and abs(counts[1] - 550) < 55


def test_unlabeled_rows_use_their_own_rate():
    labels = torch.tensor([-1, -1, 0])
    index = resample_rows(labels, torch.tensor([0.0]), 0.0, torch.Generator().manual_seed(0))
    assert len(index) == 0
