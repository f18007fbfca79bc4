"""Retrieval recall@k on aligned and shuffled pairs."""
import torch

from resmm.train.retrieval import flat_metrics, retrieval_recall


class Aligned(torch.nn.Module):
    """Stand-in model whose image and text projections are the same vector per row (perfect pairs)."""

    def __init__(self):
        super().__init__()
        self.retrieval = torch.nn.ModuleDict({"image": torch.nn.Identity(), "text": torch.nn.Identity()})

    def encode(self, batch):
        return {"image": batch["image"], "text": batch["text"]}

    def retrieval_embeddings(self, embeddings):
        return {m: torch.nn.functional.normalize(v, dim=-1) for m, v in embeddings.items()}


def batches(shuffle_text: bool):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40, 8, generator=g)
    text = base[torch.randperm(40, generator=g)] if shuffle_text else base + 0.01 * torch.randn(40, 8, generator=g)
    present = torch.ones(40)
    present_text = present.clone()
    present_text[0] = 0  # rows lacking a modality are left out
    yield {"image": base, "text": text, "image_present": present, "text_present": present_text,
           "label": torch.zeros(40, dtype=torch.long)}


def test_aligned_pairs_are_found_first_and_shuffled_ones_rarely():
    good = retrieval_recall(Aligned(), batches(False), ["image", "text"])
    assert good["image->text"]["recall@1"] == 1.0 and good["text->image"]["recall@1"] == 1.0
    assert good["image->text"]["rows"] == 39
    bad = retrieval_recall(Aligned(), batches(True), ["image", "text"])
    assert bad["image->text"]["recall@1"] < 0.2
    assert bad["image->text"]["recall@1"] <= bad["image->text"]["recall@5"] <= bad["image->text"]["recall@10"]
    assert flat_metrics(good)["retrieval/image_to_text/recall_at_10"] == good["image->text"]["recall@10"]
