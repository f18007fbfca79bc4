"""Encoders, fusions and the composed network on tiny dims with fixed seeds."""
import pytest
import torch

from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.modalities.network import build_model
from resmm.models.fusion import FUSIONS, build_fusion
from resmm.models.encoders import AudioResNet, ResNet2d, TextResConv
from resmm.train.losses import LongTailLoss
from tests.conftest import make_batch

D = 16
MODALITIES = ["image", "text", "audio"]


@pytest.fixture
def spec():
    cfg = load_config()
    return PreprocessSpec.from_config(cfg.data, MODALITIES, [str(i) for i in range(5)])


def test_encoders_return_batch_by_embed_dim():
    torch.manual_seed(0)
    assert ResNet2d(3, (4, 8), 1, D)(torch.randn(2, 3, 32, 32)).shape == (2, D)
    assert AudioResNet(ResNet2d(1, (4, 8), 2, D))(torch.randn(2, 32, 63)).shape == (2, D)
    assert TextResConv(100, 8, 2, D)(torch.randint(0, 100, (2, 12))).shape == (2, D)


def test_maxpool_downsampling_keeps_every_conv_at_full_resolution_and_the_output_grid():
    torch.manual_seed(0)
    strided, pooled = (ResNet2d(1, (4, 8), 1, D, downsample=d).eval() for d in ("stride", "maxpool"))
    grids = {}
    for name, net in (("stride", strided), ("maxpool", pooled)):
        net.stages.register_forward_hook(lambda module, args, out, name=name: grids.__setitem__(name, out.shape))
        net(torch.zeros(1, 1, 32, 32))
    assert grids == {"stride": (1, 8, 8, 8), "maxpool": (1, 8, 8, 8)}  # same output grid either way
    convs = [m for m in pooled.stages.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(conv.stride == (1, 1) for conv in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in pooled.stages) == 2
    # the image builder uses it (benchmarks/results/encoders.md: stride trailed a plain CNN on stamps)
    image = build_model(load_config().model, PreprocessSpec.from_config(load_config().data, ["image"], ["a", "b"]))
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in image.encoders["image"].modules())


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_shape_and_mask_isolation(fusion):
    torch.manual_seed(0)
    module = build_fusion(fusion, MODALITIES, D, depth=2, dropout=0.0).eval()
    emb = {m: torch.randn(3, D) for m in MODALITIES}
    present = {m: torch.ones(3) for m in MODALITIES}
    present["audio"] = torch.tensor([1.0, 0.0, 0.0])
    out = module(emb, present)
    assert out.shape == (3, D)
    # Changing an absent modality's embedding must not change the output.
    changed = dict(emb, audio=emb["audio"] + 100.0)
    same = module(changed, present)
    assert torch.allclose(out[1:], same[1:]) and not torch.allclose(out[0], same[0])
    # Nothing present: finite output, no NaN from an empty mean.
    empty = module(emb, {m: torch.zeros(3) for m in MODALITIES})
    assert torch.isfinite(empty).all()


def test_gradients_reach_every_encoder(spec):
    torch.manual_seed(0)
    model = build_model(load_config(None, ["model.embed_dim=16"]).model, spec)
    out = model(make_batch(spec))
    out.logits.sum().backward()
    for name, encoder in model.encoders.items():
        grads = [p.grad for p in encoder.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name


def test_a_few_training_steps_reduce_the_loss(spec):
    supervised_loss = LongTailLoss("ce", [1] * len(spec.classes))
    torch.manual_seed(0)
    model = build_model(load_config(None, ["model.embed_dim=16", "model.dropout=0"]).model, spec)
    batch = make_batch(spec, rows=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = supervised_loss(model(batch).logits, batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
