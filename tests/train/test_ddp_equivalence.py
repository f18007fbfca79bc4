"""With `model.norm=group`, two DDP workers on half a global batch each train exactly like one worker on the whole
batch (gloo, CPU). BatchNorm statistics are per worker, so `batch` is only approximately invariant."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from resmm.config import load_config
from resmm.modalities.spec import PreprocessSpec
from resmm.modalities.network import build_model
from resmm.train.loop import Precision, train_step
from resmm.train.losses import LongTailLoss
from resmm.train.objectives import total_loss

GLOBAL_BATCH, STEPS = 16, 4
# The default encoders, and every other family member (sequence encoders and ViT, dropout off so runs compare).
ENCODER_SETS = {
    "defaults": (),
    "vit+lstm+gru": ("model.encoders.image=vit", "model.encoders.text=lstm", "model.encoders.audio=gru"),
    "transformers": ("model.encoders.text=transformer", "model.encoders.audio=transformer",
                     "model.encoders.image=vit", "data.image.size_px=16"),
}


def setup(encoders: str = "defaults"):
    overrides = list(ENCODER_SETS[encoders])
    overrides += [f"model.encoder_options.{o.split('.')[2].split('=')[0]}.dropout=0" for o in overrides
                  if o.startswith("model.encoders.")]
    cfg = load_config(None, ["model.embed_dim=16", "model.dropout=0", "model.fusion=mrn", "model.norm=group",
                             *overrides])
    spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, [str(i) for i in range(4)])
    return cfg, spec


def global_batches(spec):
    g = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        batch = {m: torch.randn(GLOBAL_BATCH, *spec.input_shape(m), generator=g) for m in ("image", "audio")}
        batch["text"] = torch.randint(1, spec.settings["text"].vocab_buckets, (GLOBAL_BATCH, *spec.input_shape("text")),
                                      generator=g)
        for m in ("image", "text", "audio"):
            batch[f"{m}_present"] = torch.ones(GLOBAL_BATCH)
        batch["label"] = torch.randint(0, 4, (GLOBAL_BATCH,), generator=g)
        yield batch


def train(rank: int, world: int, encoders: str = "defaults") -> dict:
    cfg, spec = setup(encoders)
    torch.manual_seed(0)
    model = build_model(cfg.model, spec)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    precision = Precision.for_device(torch.device("cpu"), amp=False)
    loss_fn = LongTailLoss("ce", [1, 1, 1, 1])

    def objective(output, batch):
        return total_loss(output, batch, loss_fn, aux_weight=0.3, retrieval_weight=0.0)

    per_rank = GLOBAL_BATCH // world
    for batch in global_batches(spec):
        shard = {k: v[rank * per_rank:(rank + 1) * per_rank] for k, v in batch.items()}
        train_step(model, shard, optimizer, precision.grad_scaler(), precision, objective)
    module = model.module if world > 1 else model
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _worker(rank: int, world: int, port: int, out_path: str, encoders: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state = train(rank, world, encoders)
        if rank == 0:
            torch.save(state, out_path)
    finally:
        dist.destroy_process_group()


def without_key_biases(state: dict) -> dict:
    """The state with attention's key biases zeroed: softmax ignores a bias shared by all keys, so their gradient
    is 0 in exact arithmetic and rounding noise, which Adam scales up to lr-sized steps, is all they learn."""
    state = dict(state)
    for key in [k for k in state if k.endswith("in_proj_bias")]:
        width = state[key].shape[0] // 3
        state[key] = state[key].clone()
        state[key][width : 2 * width] = 0
    return state


@pytest.mark.parametrize("encoders", list(ENCODER_SETS))
def test_two_workers_match_one_worker_on_the_same_global_batch(tmp_path, encoders):
    single = train(0, 1, encoders)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, port, str(out), encoders), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    assert set(ddp) == set(single)
    ddp, single = without_key_biases(ddp), without_key_biases(single)
    worst = max((ddp[k].float() - single[k].float()).abs().max().item() for k in single)
    assert worst < 1e-4, worst
    # And training moved the weights, so the comparison is not vacuous.
    torch.manual_seed(0)
    cfg, spec = setup(encoders)
    initial = build_model(cfg.model, spec).state_dict()
    assert max((single[k].float() - initial[k].float()).abs().max().item() for k in single) > 1e-3
