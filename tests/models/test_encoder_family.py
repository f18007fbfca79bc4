"""The encoder family (`model.encoders.<modality>=<name>`): every registered encoder maps its modality's batch to
(B, D), computes each row on its own, and is chosen and checked by the config."""
from __future__ import annotations

import pytest
import torch

from resmm.config import ConfigError, load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.modalities import MODALITIES
from resmm.modalities.network import build_model
from resmm.models.sequence_encoders import packed_to_front

EMBED_DIM = 24
CHOICES = [(m, name) for m, record in MODALITIES.items() for name in [record.default_encoder, *record.encoders]]


def spec_for(overrides=()):
    cfg = load_config(None, ["data.text.max_tokens=16", "data.audio.max_seconds=0.5", "data.image.size_px=16",
                             *overrides])
    return PreprocessSpec.from_config(cfg.data, cfg.model.modalities, ["a", "b", "c"])


def inputs(spec, modality: str, rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (rows, *spec.input_shape(modality))
    if modality == "text":
        ids = torch.randint(1, spec.settings["text"].vocab_buckets, shape, generator=g)
        return ids * (torch.rand(shape, generator=g) < 0.7)  # padding holes, as token dropout leaves them
    return torch.randn(shape, generator=g)


def encoder(modality: str, name: str, spec, **options):
    torch.manual_seed(0)
    return MODALITIES[modality].build(name, spec.settings[modality], EMBED_DIM, "group", options or None)


@pytest.mark.parametrize("modality,name", CHOICES)
def test_every_encoder_maps_its_batch_to_the_shared_embedding(modality, name):
    spec = spec_for()
    out = encoder(modality, name, spec)(inputs(spec, modality, 5, 0))
    assert out.shape == (5, EMBED_DIM) and torch.isfinite(out).all()


@pytest.mark.parametrize("modality,name", CHOICES)
def test_an_absent_row_never_changes_a_present_row(modality, name):
    """Rows marked absent are zero-filled by the decoder, or hold anything a corrupt cell left: the present rows'
    embeddings are the same either way, in training mode too (no batch statistics, dropout off)."""
    spec = spec_for()
    options = {} if name == MODALITIES[modality].default_encoder else {"dropout": 0.0}
    net = encoder(modality, name, spec, **options).train()
    x = inputs(spec, modality, 6, 1)
    present = torch.tensor([1, 0, 1, 0, 1, 1], dtype=torch.bool)
    changed = torch.where(present.view(-1, *[1] * (x.dim() - 1)), x, inputs(spec, modality, 6, 2))
    changed[1] = 0  # an all-padding row too
    torch.testing.assert_close(net(x)[present], net(changed)[present], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer"])
def test_text_encoders_read_the_tokens_that_remain_after_dropout_in_order(name):
    spec = spec_for()
    net = encoder("text", name, spec, dropout=0.0).eval()
    holes = torch.tensor([[5, 0, 7, 0, 9] + [0] * 11])
    packed = torch.tensor([[5, 7, 9] + [0] * 13])
    assert torch.equal(packed_to_front(holes), packed)
    torch.testing.assert_close(net(holes), net(packed))
    assert not torch.allclose(net(packed), net(torch.tensor([[9, 7, 5] + [0] * 13])))  # order matters


def test_the_config_names_every_encoder_and_explains_a_wrong_one():
    cfg = load_config(None, ["model.encoders.text=lstm", "model.encoder_options.text.hidden=32"])
    assert cfg.model.encoders == {"image": "resnet", "text": "lstm", "audio": "resnet"}
    assert cfg.flat()["model.encoder_options.text.hidden"] == 32
    with pytest.raises(ConfigError, match=r"model: encoders.text: 'lsmt' is not one of the text encoders \(resconv, "
                                          r"lstm, gru, transformer, hf:<dir or model id>\)"):
        load_config(None, ["model.encoders.text=lsmt"])
    with pytest.raises(ConfigError, match="encoder_options.image: encoder 'resnet' has no option 'patch_px'"):
        load_config(None, ["model.encoder_options.image.patch_px=8"])
    with pytest.raises(ConfigError, match="encoder_options.audio: heads: Input should be greater than or equal to 1"):
        load_config(None, ["model.encoders.audio=transformer", "model.encoder_options.audio.heads=0"])
    with pytest.raises(ConfigError, match="'hf:x' is not one of the audio encoders"):
        load_config(None, ["model.encoders.audio=hf:x"])


def test_a_vit_that_does_not_tile_the_image_is_refused_with_the_numbers():
    spec = spec_for()
    with pytest.raises(ValueError, match=r"size_px \(16\) a multiple of patch_px \(5\)"):
        encoder("image", "vit", spec, patch_px=5)


def test_a_model_of_non_default_encoders_trains():
    cfg = load_config(None, ["model.encoders.image=vit", "model.encoders.text=transformer", "model.encoders.audio=gru",
                             "model.embed_dim=24", "data.text.max_tokens=16", "data.audio.max_seconds=0.5",
                             "data.image.size_px=16"])
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, ["a", "b"])
    torch.manual_seed(0)
    net = build_model(cfg.model, spec)
    labels = torch.arange(32) % 2
    batch = {m: inputs(spec, m, 32, 3) for m in ("image", "audio")}
    batch["text"] = torch.where(labels[:, None].bool(), torch.full((32, 16), 3), torch.full((32, 16), 11))
    batch.update({f"{m}_present": torch.ones(32) for m in ("image", "text", "audio")})
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(batch).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    assert (net(batch).logits.argmax(1) == labels).float().mean() == 1.0
