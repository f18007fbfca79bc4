"""The training step, including the mixed-precision path that GPU workers take, exercised on CPU."""
import torch

from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.modalities.network import build_model
from resmm.train.loop import Precision, train_step
from resmm.train.losses import LongTailLoss
from resmm.train.objectives import total_loss
from tests.conftest import make_batch


def tiny_model():
    cfg = load_config(None, ["model.embed_dim=16", "model.dropout=0"])
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, [str(i) for i in range(5)])
    torch.manual_seed(0)
    return build_model(cfg.model, spec), spec


def test_precision_is_off_on_cpu_even_when_amp_is_requested():
    precision = Precision.for_device(torch.device("cpu"), amp=True)
    assert not precision.enabled and not precision.grad_scaler().is_enabled()


def test_autocast_step_trains_on_cpu_with_bf16():
    # The same code path a GPU worker runs, with CPU autocast standing in for CUDA autocast.
    model, spec = tiny_model()
    batch = make_batch(spec, rows=8)
    precision = Precision(enabled=True, dtype=torch.bfloat16, device_type="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scaler = precision.grad_scaler()
    fused_loss = LongTailLoss("ce", [1] * len(spec.classes))

    def objective(output, batch):
        return total_loss(output, batch, fused_loss, aux_weight=0.3, retrieval_weight=0.0)

    losses = [train_step(model, batch, optimizer, scaler, precision, objective)[0].item() for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.6 * losses[0]


def test_weight_average_trails_the_trained_weights_and_averages_batchnorm_statistics():
    from resmm.train.loop import weight_average

    model, spec = tiny_model()
    average = weight_average(model, decay=0.9)
    start = {k: v.clone() for k, v in average.module.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    objective = lambda output, batch: total_loss(output, batch, LongTailLoss("ce", [1.0] * 5), 1.0, 0.0)  # noqa: E731
    precision = Precision.for_device(torch.device("cpu"), amp=False)
    for step in range(5):
        train_step(model, make_batch(spec, rows=8, seed=step), optimizer, precision.grad_scaler(), precision, objective)
        average.update_parameters(model)
    trained, averaged = model.state_dict(), average.module.state_dict()
    moved = [k for k in trained if trained[k].is_floating_point() and not torch.equal(trained[k], start[k])]
    assert moved and any("running_mean" in k for k in moved)  # BatchNorm statistics are averaged too
    for key in moved:  # strictly between the start and the trained weights, nearer neither end exactly
        assert not torch.equal(averaged[key], trained[key]) and not torch.equal(averaged[key], start[key])
