"""Error bars of validation readings: a cluster bootstrap that resamples groups, not rows."""
import numpy as np
import pytest

from resmm.train.noise import balanced_hits, difference_standard_error, group_weights, standard_error


def test_balanced_hits_is_sklearns_balanced_accuracy_for_whole_hits():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    assert balanced_hits(labels, (labels == predicted).astype(float)) == pytest.approx(
        balanced_accuracy_score(labels, predicted))


def test_row_bootstrap_matches_the_binomial_standard_error():
    rng = np.random.default_rng(1)
    labels, hits = np.zeros(400, np.int64), (rng.random(400) < 0.3).astype(float)
    analytic = np.sqrt(0.3 * 0.7 / 400)
    assert standard_error(labels, hits, np.arange(400), seed=0) == pytest.approx(analytic, rel=0.2)


def test_groups_widen_the_error_bar_of_rows_that_succeed_or_fail_together():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(40), 10)  # 40 groups of 10 rows, each right or wrong as a whole
    hits = (rng.random(40) < 0.3)[groups].astype(float)
    labels = np.zeros(400, np.int64)
    by_rows, by_groups = standard_error(labels, hits, np.arange(400), 0), standard_error(labels, hits, groups, 0)
    assert by_groups > 2.5 * by_rows  # sqrt(10) in theory: ten rows carry one draw's information


def test_group_weights_draw_a_group_s_rows_together():
    groups = np.array([3, 3, 7, 7, 7, 9])
    weights = group_weights(groups, seed=0, resamples=50)
    assert weights.shape == (50, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 2] == weights[:, 4]).all()


def test_the_paired_difference_is_less_noisy_than_either_reading():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 400)
    before = (rng.random(400) < 0.5).astype(float)
    after = before.copy()
    after[rng.choice(400, 20, replace=False)] = 1.0  # the same model, a little better on 20 rows
    assert difference_standard_error(labels, after, before, np.arange(400), 0) < 0.5 * standard_error(
        labels, after, np.arange(400), 0)
