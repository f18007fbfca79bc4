"""The modality registry: a new modality is one record, and the settings of older configs and models still load."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch
from pydantic import Field
from torch import nn

from resmm.config import ModelConfig, load_config
from resmm.data.augment import augment_batch
from resmm.data.batch import BatchPreprocessor, PreprocessSpec
from resmm.data.decoded import DecodeError, decode_cells
from resmm.modalities import MODALITIES
from resmm.modalities.base import ColumnType, Modality, Settings
from resmm.modalities.image import ImageCfg
from resmm.models.builders import build_model
from resmm.sources.contract import ContractError, check_schema
from resmm.train.objectives import total_loss
from tests.conftest import png_bytes

# --- a toy fourth modality, defined here alone: a fixed-length float vector column (tabular features) ----------


class VectorCfg(Settings):
    dim: int = Field(4, ge=1)


def _vector_cell(cell, dim: int):
    if len(cell) != dim:
        raise DecodeError(f"{len(cell)} values, expected {dim}", "vector_wrong_length")
    return np.asarray(cell, dtype=np.float32), None


def decode_vectors(cells, cfg: VectorCfg):
    return decode_cells(cells, (cfg.dim,), lambda cell: _vector_cell(cell, cfg.dim))


def jitter(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return values + 0.01 * torch.randn(values.shape, generator=generator)


VECTOR = Modality(
    name="vector", settings=VectorCfg,
    column=ColumnType(lambda t: pa.types.is_list(t) and pa.types.is_floating(t.value_type), "list<float>", False),
    decode=decode_vectors, input_shape=lambda cfg: (cfg.dim,), augment=jitter,
    build_encoder=lambda cfg, embed_dim, norm="batch": nn.Sequential(nn.Linear(cfg.dim, embed_dim), nn.ReLU()),
    example_cell=lambda cfg: [0.0] * cfg.dim,
)


@pytest.fixture
def vector_modality(monkeypatch):
    monkeypatch.setitem(MODALITIES, "vector", VECTOR)
    return VECTOR


def toy_rows(rows: int, seed: int = 0) -> dict:
    """Two classes told apart by the vector alone; the images are noise, and every 5th row lacks its vector."""
    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(rows)]
    vectors = [None if i % 5 == 4 else list(rng.normal(2.0 * (2 * y - 1), 1.0, 4)) for i, y in enumerate(labels)]
    return {"sample_id": [f"r{i}" for i in range(rows)], "label": labels,
            "image": [png_bytes(8, 8, "RGB", seed=i) for i in range(rows)], "vector": vectors}


def test_a_fourth_modality_is_one_record_and_trains_end_to_end(vector_modality):
    spec = PreprocessSpec(("image", "vector"), ("0", "1"), {"image": ImageCfg(size_px=8), "vector": VectorCfg()})
    batch = BatchPreprocessor(spec)(toy_rows(40))
    assert batch["vector"].shape == (40, 4) and batch["image"].shape == (40, 3, 8, 8)
    assert batch["vector_present"].tolist() == [0.0 if i % 5 == 4 else 1.0 for i in range(40)]
    assert not batch["vector"][4].any()  # an absent vector is zero-filled

    wrong = BatchPreprocessor(spec).decode_column("vector", [[1.0, 2.0], None])
    assert wrong.present.tolist() == [False, False] and wrong.events == ["vector_wrong_length", None]

    torch.manual_seed(0)
    # group norm: 40 steps leave batch-norm running statistics far from the batches' own
    model_cfg = ModelConfig.model_construct(modalities=["image", "vector"], embed_dim=16, norm="group")
    network = build_model(model_cfg, spec)
    assert set(network.encoders) == {"image", "vector"}
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    network.train()
    losses = []
    for step in range(40):
        fed = augment_batch(tensors, spec.modalities, torch.Generator().manual_seed(step))
        loss, _ = total_loss(network(fed), fed, nn.functional.cross_entropy, 1.0, 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    network.eval()
    with torch.no_grad():
        predicted = network(tensors).logits.argmax(1)
    with_vector = tensors["vector_present"] > 0
    assert losses[-1] < 0.5 * losses[0]
    assert (predicted[with_vector] == tensors["label"][with_vector]).float().mean() >= 0.95


def test_the_contract_checks_a_registered_modality_column(vector_modality):
    floats = pa.schema([("sample_id", pa.string()), ("label", pa.int64()), ("vector", pa.list_(pa.float32()))])
    check_schema(floats, "toy.parquet", ["vector"])
    with pytest.raises(ContractError, match="toy.parquet: column 'vector' has type string, expected list<float>"):
        check_schema(pa.schema([("sample_id", pa.string()), ("label", pa.int64()), ("vector", pa.string())]),
                     "toy.parquet", ["vector"])


def test_flat_keys_of_earlier_configs_land_in_the_modality_sections(tmp_path):
    (tmp_path / "old.yaml").write_text("data:\n  image_size_px: 48\n  audio_n_mels: 40\n")
    cfg = load_config(tmp_path / "old.yaml", ["data.text_max_tokens=24"])
    assert (cfg.data.image.size_px, cfg.data.audio.n_mels, cfg.data.text.max_tokens) == (48, 40, 24)
    assert cfg == load_config(None, ["data.image.size_px=48", "data.audio.n_mels=40", "data.text.max_tokens=24"])
    assert cfg.flat()["data.image.size_px"] == 48


def test_a_model_saved_with_flat_spec_keys_loads_with_the_same_settings():
    saved_before = {  # the bundle["spec"] of a model registered before the settings were nested
        "modalities": ["image", "text", "audio"], "classes": ["a", "b"], "image_size_px": 16, "image_channels": 1,
        "text_max_tokens": 40, "text_vocab_buckets": 512, "audio_sample_rate_hz": 16000, "audio_max_seconds": 1.5,
        "audio_n_mels": 24,
    }
    spec = PreprocessSpec.from_dict(saved_before)
    cfg = load_config(None, ["data.image.size_px=16", "data.image.channels=1", "data.text.max_tokens=40",
                             "data.text.vocab_buckets=512", "data.audio.sample_rate_hz=16000",
                             "data.audio.max_seconds=1.5", "data.audio.n_mels=24"])
    assert spec == PreprocessSpec.from_config(cfg.data, ["image", "text", "audio"], ["a", "b"])
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert spec.input_shape("image") == (1, 16, 16) and spec.input_shape("audio")[0] == 24


def test_decoding_never_loads_torch():
    """Ray Data's CPU decode tasks import the batch preprocessor; torch would cost each of them ~200 MB."""
    code = ("import sys, resmm.data.batch, resmm.sources.contract, resmm.modalities; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
