"""Augmentation keeps shapes, changes present rows, and leaves absent rows as exact zeros."""
import torch

from resmm.modalities.transforms import augment_batch


def test_augmentation_changes_present_rows_only():
    g = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randn(3, 3, 16, 16), "image_present": torch.tensor([1.0, 0.0, 1.0]),
        "audio": torch.randn(3, 8, 20), "audio_present": torch.tensor([0.0, 1.0, 1.0]),
        "text": torch.randint(1, 50, (3, 12)), "text_present": torch.tensor([1.0, 1.0, 1.0]),
        "label": torch.tensor([0, 1, 2]),
    }
    batch["image"][1] = 0
    batch["audio"][0] = 0
    out = augment_batch(batch, ["image", "text", "audio"], g)
    for m in ("image", "audio", "text"):
        assert out[m].shape == batch[m].shape and out[m].dtype == batch[m].dtype
    assert not out["image"][1].any() and not out["audio"][0].any()
    assert not torch.allclose(out["image"][0], batch["image"][0])
    assert not torch.allclose(out["audio"][2], batch["audio"][2])
    assert (out["text"] == 0).sum() > (batch["text"] == 0).sum()
