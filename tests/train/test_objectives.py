"""The multi-loss objective: every modality head trains on the fused head's imbalance treatment."""
import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from resmm.models.multimodal import MultimodalOutput
from resmm.train.losses import LongTailLoss
from resmm.train.objectives import total_loss

COUNTS = [1600, 400, 100, 40]  # imbalance 40


def long_tailed_set(seed: int):
    """Four overlapping Gaussian classes in 2-D with a 40:1 long tail."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5], [1.5, 1.5]])
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    return centres[labels] + torch.randn(len(labels), 2, generator=g), labels


def train_head(kind: str) -> tuple[float, float]:
    """Train a fused linear head and an image head through total_loss; (balanced acc, acc) of the image head."""
    torch.manual_seed(0)
    x, y = long_tailed_set(0)
    fused, head = torch.nn.Linear(2, 4), torch.nn.Linear(2, 4)
    optimizer = torch.optim.Adam([*fused.parameters(), *head.parameters()], lr=0.05)
    loss_fn = LongTailLoss(kind, [float(c) for c in COUNTS])
    present = torch.ones(len(y))
    for _ in range(300):
        output = MultimodalOutput(fused(x), x, {}, None, {"image": head(x)}, {})
        loss, parts = total_loss(output, {"label": y, "image_present": present}, loss_fn, 1.0, 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_x, test_y = long_tailed_set(1)
    predicted = head(test_x).argmax(1).numpy()
    return balanced_accuracy_score(test_y.numpy(), predicted), accuracy_score(test_y.numpy(), predicted)


def test_modality_head_on_logit_adjustment_gains_balanced_accuracy_on_a_long_tail():
    plain_balanced, plain_accuracy = train_head("ce")
    adjusted_balanced, adjusted_accuracy = train_head("logit_adjusted")
    assert adjusted_balanced > plain_balanced + 0.05  # the tail classes are found
    assert adjusted_accuracy < plain_accuracy  # at the head classes' expense, as logit adjustment should


def test_head_loss_counts_only_labelled_rows_where_the_modality_is_present():
    logits = torch.randn(4, 3, requires_grad=True)
    output = MultimodalOutput(torch.zeros(4, 3), torch.zeros(4, 2), {}, None, {"text": logits}, {})
    batch = {"label": torch.tensor([0, 1, -1, 2]), "text_present": torch.tensor([1.0, 0.0, 1.0, 1.0])}
    _, parts = total_loss(output, batch, LongTailLoss("ce", [1.0, 1.0, 1.0]), 1.0, 0.0)
    expected = torch.nn.functional.cross_entropy(logits[[0, 3]], torch.tensor([0, 2]))
    assert np.isclose(float(parts["loss_head_text"]), float(expected.detach()))
