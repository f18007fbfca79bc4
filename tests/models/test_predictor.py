"""The final predictor's pool of head log-probabilities, on tiny tensors."""
import torch
import torch.nn.functional as F

from resmm.models.predictor import FUSED_HEAD, Predictor


def parts(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 4, generator=g)
    heads = {"image": torch.randn(3, 4, generator=g), "text": torch.randn(3, 4, generator=g)}
    present = {"image": torch.tensor([1.0, 0.0, 1.0]), "text": torch.tensor([1.0, 1.0, 0.0])}
    return logits, heads, present


def test_fused_head_predictor_is_the_fused_softmax():
    logits, heads, present = parts()
    assert torch.allclose(FUSED_HEAD.probabilities(logits, heads, present), torch.softmax(logits, 1))


def test_a_row_is_pooled_only_over_the_heads_of_the_modalities_it_has():
    logits, heads, present = parts()
    late = Predictor("late", 0.0, {"image": 2.0, "text": 1.0})
    scores = late.log_scores(logits, heads, present)
    log_image, log_text = F.log_softmax(heads["image"], 1), F.log_softmax(heads["text"], 1)
    assert torch.allclose(scores[0], (2 * log_image[0] + log_text[0]) / 3)  # both present
    assert torch.allclose(scores[1], log_text[1])  # image absent: text's weight alone
    assert torch.allclose(scores[2], log_image[2])  # text absent: image's weight alone


def test_a_row_with_no_weighted_part_present_falls_back_to_the_fused_head():
    logits, heads, present = parts()
    image_only = Predictor("head:image", 0.0, {"image": 1.0})
    probs = image_only.probabilities(logits, heads, present)
    assert torch.allclose(probs[1], torch.softmax(logits[1], 0))
    assert torch.allclose(probs.sum(1), torch.ones(3))


def test_predictor_round_trips_through_the_bundle_dict_and_old_bundles_serve_the_fused_head():
    chosen = Predictor("fused+late:skill", 0.4, {"image": 0.5, "text": 0.1})
    assert Predictor.from_dict(chosen.as_dict()) == chosen
    assert Predictor.from_dict(None) == FUSED_HEAD
