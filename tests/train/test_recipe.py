"""`auto` picks the imbalance treatment from the class counts, as the README documents."""
import pytest

from resmm.config import load_config
from resmm.train.recipe import LONG_TAIL_RATIO, apply_recipe, choose_recipe, imbalance_ratio


@pytest.mark.parametrize("counts,loss", [
    ([1000, 900, 800], "ce"),  # near balance
    ([299, 100, 100], "ce"),  # ratio 3 exactly is a long tail, 2.99 is not
    ([300, 100, 100], "logit_adjusted"),
    ([2000, 500, 80, 0], "logit_adjusted"),  # an absent class does not count
    ([50], "ce"),
])
def test_auto_uses_logit_adjustment_on_a_long_tail_and_never_resamples(counts, loss):
    recipe = choose_recipe(load_config(), counts)
    assert (recipe.loss, recipe.resample) == (loss, "none")
    assert recipe.imbalance_ratio == pytest.approx(imbalance_ratio(counts))
    assert (recipe.imbalance_ratio >= LONG_TAIL_RATIO) == (loss == "logit_adjusted")
    resolved = apply_recipe(load_config(), recipe)
    assert (resolved.train.loss, resolved.data.resample) == (loss, "none")
    assert recipe.as_params()["recipe.loss"] == loss


def test_an_explicit_setting_is_kept_and_auto_adds_no_second_correction():
    long_tail = [1000, 10]
    recipe = choose_recipe(load_config(None, ["data.resample=balanced"]), long_tail)
    assert (recipe.loss, recipe.resample) == ("ce", "balanced")
    recipe = choose_recipe(load_config(None, ["train.loss=focal"]), long_tail)
    assert (recipe.loss, recipe.resample) == ("focal", "none")
    recipe = choose_recipe(load_config(None, ["train.loss=ce", "data.resample=sqrt"]), long_tail)
    assert (recipe.loss, recipe.resample) == ("ce", "sqrt")
    recipe = choose_recipe(load_config(None, ["data.class_weights={a: 2.0}"]), long_tail)
    assert recipe.loss == "ce"
