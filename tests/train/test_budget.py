"""The default budget trains until validation stops improving; a fixed `train.epochs` runs exactly that many."""
import pytest

from resmm.config import load_config
from resmm.train.budget import Budget, warmup_factor


def budget(*overrides) -> Budget:
    return Budget.from_config(load_config(None, list(overrides)).train)


def run(b: Budget, scores: list[float]) -> tuple[int, str]:
    for epoch, score in enumerate(scores):
        reason = b.stop_reason(epoch, score, elapsed_s=60.0 * epoch)
        if reason:
            return epoch + 1, reason
    raise AssertionError("never stopped")


def test_default_budget_stops_after_patience_epochs_without_a_real_gain():
    b = budget("train.patience=3", "train.min_delta=0.01")
    # Gains of 0.005 are below min_delta: patience counts from epoch 2 (index 1); the best epoch is still the
    # highest score, epoch 4, whose checkpoint is the one registered.
    epochs, reason = run(b, [0.3, 0.5, 0.505, 0.51, 0.509, 0.2, 0.9])
    assert epochs == 5 and reason == ("converged: no gain of 0.01 in val balanced accuracy since epoch 2 (3 epochs); "
                                      "best epoch 4")
    assert b.best_epoch == 3 and b.best_score == 0.51 and b.gain_epoch == 1


def test_default_budget_keeps_going_while_it_improves_up_to_max_epochs():
    epochs, reason = run(budget("train.max_epochs=6"), [0.1 * i for i in range(10)])
    assert epochs == 6 and reason == "train.max_epochs=6 reached"


def test_wall_time_cap_and_fixed_epochs():
    epochs, reason = run(budget("train.max_minutes=2"), [0.1 * i for i in range(10)])
    assert epochs == 3 and reason == "train.max_minutes=2 reached"  # epoch 3 ends at 120 s of 60 s/epoch
    fixed = budget("train.epochs=3", "train.patience=1")
    assert not fixed.until_converged and fixed.epoch_label(0) == "1/3"
    epochs, reason = run(fixed, [0.5, 0.1, 0.1, 0.1])  # no early stop with a fixed count
    assert epochs == 3 and reason == "train.epochs=3 done"
    assert budget().epoch_label(2) == "3/≤30"


def test_budget_state_survives_a_restart():
    first = budget("train.patience=2")
    first.stop_reason(0, 0.4, 0.0)
    resumed = budget("train.patience=2")
    resumed.load_state_dict(first.state_dict())
    assert resumed.stop_reason(1, 0.39, 0.0) is None
    assert resumed.stop_reason(2, 0.39, 0.0).startswith("converged")


@pytest.mark.parametrize("step,expected", [(0, 0.1), (50, 0.55), (100, 1.0), (500, 1.0)])
def test_warmup_rises_linearly_over_the_first_epoch(step, expected):
    assert warmup_factor(step, 100) == pytest.approx(expected)


def test_equal_scores_name_the_latest_epoch_as_the_registered_checkpoint_is():
    from resmm.train.driver import best_checkpoint

    b = budget("train.patience=2")
    epochs, reason = run(b, [0.4, 0.4, 0.4, 0.4])
    assert reason.endswith("best epoch 3") and b.best_epoch == 2
    # What Ray keeps of them (num_to_keep=2: the latest of the tied ones), the driver registers the same epoch.
    kept = [("ckpt-1", {"val_balanced_accuracy": 0.4, "epoch": 1}), ("ckpt-2", {"val_balanced_accuracy": 0.4, "epoch": 2})]
    assert best_checkpoint(kept) == "ckpt-2"
    assert best_checkpoint([("a", {"val_balanced_accuracy": 0.5, "epoch": 0}), *kept]) == "a"
