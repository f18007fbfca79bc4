"""Long-tail losses on tiny tensors."""
import pytest
import torch
import torch.nn.functional as F

from resmm.train.losses import LongTailLoss

COUNTS = [900.0, 90.0, 10.0]


def sample(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, generator=g), torch.tensor([0, 0, 1, 2, -1, 1])


def test_ce_matches_torch_on_labelled_rows():
    logits, labels = sample()
    expected = F.cross_entropy(logits[labels >= 0], labels[labels >= 0])
    assert torch.allclose(LongTailLoss("ce", COUNTS)(logits, labels), expected)


def test_class_balanced_weights_grow_towards_the_tail():
    weights = LongTailLoss("class_balanced", COUNTS).class_weights
    assert weights[0] < weights[1] < weights[2]
    assert weights.sum() == pytest.approx(3.0)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_logit_adjustment_adds_tau_times_the_log_prior(tau):
    logits, labels = sample()
    prior = torch.tensor(COUNTS) / sum(COUNTS)
    shifted = logits + tau * prior.log()
    expected = F.cross_entropy(shifted[labels >= 0], labels[labels >= 0])
    assert torch.allclose(LongTailLoss("logit_adjusted", COUNTS, tau=tau)(logits, labels), expected, atol=1e-6)


def test_focal_down_weights_easy_rows():
    logits, labels = sample()
    assert LongTailLoss("focal", COUNTS)(logits, labels) < LongTailLoss("ce", COUNTS)(logits, labels)


@pytest.mark.parametrize("kind", ["ce", "class_balanced", "focal", "logit_adjusted"])
def test_unlabeled_batches_give_zero_and_keep_the_graph(kind):
    logits = torch.randn(4, 3, requires_grad=True)
    loss = LongTailLoss(kind, COUNTS)(logits, torch.full((4,), -1))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None
