"""Choosing the final predictor on validation outputs: the family, out-of-fold weights, ties to the simplest."""
import numpy as np

from resmm.train.predictor_choice import (FOLDS, ValidationOutputs, choose_predictor, fitted_candidates,
                                          fixed_candidates, fold_of_rows)

CLASSES = 4


def outputs(rows: int = 400, seed: int = 0, image_noise: float = 0.5, text_noise: float = 5.0,
            fused_noise: float = 3.0) -> ValidationOutputs:
    """Logits that are the one-hot label plus noise: a sharp image head, a useless text head, a weak fused head."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, rows)
    onehot = np.eye(CLASSES, dtype=np.float32)[labels] * 3
    noisy = lambda scale: (onehot + rng.normal(0, scale, (rows, CLASSES))).astype(np.float32)  # noqa: E731
    present = {"image": (rng.random(rows) > 0.3).astype(np.float32), "text": np.ones(rows, np.float32)}
    return ValidationOutputs(labels, noisy(fused_noise), {"image": noisy(image_noise), "text": noisy(text_noise)},
                             present)


def test_family_is_small_and_fixed_by_the_modalities():
    names = [c.name for c in fixed_candidates(["image", "text", "audio"])]
    assert names == ["fused", "head:image", "head:text", "head:audio", "late:equal", "fused+late:equal"]
    assert [c.name for c in fitted_candidates(outputs(), CLASSES)] == ["late:skill", "fused+late:skill"]


def test_skill_weights_favour_the_informative_head_and_sum_to_one():
    late, both = fitted_candidates(outputs(), CLASSES)
    assert late.heads["image"] > 5 * late.heads["text"]
    assert abs(sum(late.heads.values()) - 1.0) < 1e-9
    assert abs(both.fused + sum(both.heads.values()) - 1.0) < 1e-9


def test_choice_beats_the_fused_head_when_a_head_is_sharper():
    choice = choose_predictor(outputs(), CLASSES)
    scores = {row["candidate"]: row["val_balanced_accuracy"] for row in choice.table}
    assert choice.chosen.name != "fused"
    assert scores[choice.chosen.name] == max(scores.values())
    assert scores[choice.chosen.name] > scores["fused"] + 0.1
    assert len(choice.table) == 7


def test_fitted_candidates_are_scored_out_of_fold():
    choice = choose_predictor(outputs(), CLASSES)
    how = {row["candidate"]: row["scored_on"] for row in choice.table}
    assert how["late:skill"] == f"{FOLDS}-fold out of fold" and how["fused"] == "all rows"
    folds = fold_of_rows(103)
    assert set(np.bincount(folds).tolist()) <= {20, 21}


def test_a_tie_keeps_the_fused_head():
    same = outputs()
    tied = ValidationOutputs(same.labels, same.logits, {m: same.logits.copy() for m in same.head_logits},
                             {m: np.ones_like(v) for m, v in same.present.items()})
    assert choose_predictor(tied, CLASSES).chosen.name == "fused"


def test_no_labelled_rows_keeps_the_fused_head():
    empty = ValidationOutputs(np.full(5, -1), np.zeros((5, CLASSES), np.float32), {}, {})
    assert choose_predictor(empty, CLASSES).chosen.name == "fused"


def test_a_gain_within_one_standard_error_keeps_the_fused_head():
    base = outputs(fused_noise=3.0)
    other = base.logits.copy()
    right = other.argmax(1) == base.labels
    fixed, broken = np.flatnonzero(~right)[:30], np.flatnonzero(right)[:27]
    other[fixed, base.labels[fixed]] += 100.0  # right on 30 rows the fused head gets wrong ...
    other[broken, (base.labels[broken] + 1) % CLASSES] += 100.0  # ... wrong on 27 it gets right: a noise-sized net gain
    close = ValidationOutputs(base.labels, base.logits, {"image": other, "text": base.logits.copy()},
                              {m: np.ones(len(base.labels), np.float32) for m in ("image", "text")})
    choice = choose_predictor(close, CLASSES)
    scores = {row["candidate"]: row["val_balanced_accuracy"] for row in choice.table}
    assert max(scores.values()) > scores["fused"]
    assert choice.chosen.name == "fused"


def test_a_gain_carried_by_a_few_groups_keeps_the_fused_head_where_rows_alone_would_not():
    """20-row groups (one object's photos): a head right on two whole groups the fused head gets wrong and wrong
    on one it gets right. Counted by rows, 20 net rows of 60 discordant clear one standard error; counted by
    groups, one net group of three does not."""
    base = outputs(rows=400, fused_noise=0.0)  # the fused head right on every row
    groups = np.arange(400) // 20
    labels = base.labels.copy()
    for g in (0, 1):  # the fused head wrong on groups 0 and 1, the image head right there
        labels[groups == g] = (base.logits[groups == g].argmax(1) + 1) % CLASSES
    image = np.eye(CLASSES, dtype=np.float32)[labels] * 100
    image[groups == 2] = np.roll(image[groups == 2], 1, axis=1)  # ... and wrong on group 2
    present = {m: np.ones(400, np.float32) for m in ("image", "text")}
    heads = {"image": image, "text": base.logits.copy()}
    by_rows = choose_predictor(ValidationOutputs(labels, base.logits, heads, present), CLASSES)
    by_groups = choose_predictor(ValidationOutputs(labels, base.logits, heads, present, None, groups), CLASSES)
    scores = {row["candidate"]: row["val_balanced_accuracy"] for row in by_groups.table}
    assert scores["head:image"] == max(scores.values()) and scores["head:image"] > scores["fused"] + 0.03
    assert by_rows.chosen.name == "head:image"
    assert by_groups.chosen.name == "fused"
