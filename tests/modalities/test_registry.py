"""The modality registry: a new modality is one record, and the settings of older configs and models still load."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from pydantic import Field
from torch import nn

from resmm.config import ModelConfig, load_config
from resmm.modalities.transforms import augment_batch
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.data.decoded import DecodeError, decode_cells
from resmm.modalities import MODALITIES
from resmm.modalities.image import ImageCfg
from resmm.modalities.network import build_model
from resmm.sources.contract import ContractError, check_schema
from resmm.train.objectives import total_loss
from tests.conftest import png_bytes
from tests.e2e.conftest import free_port, running_service, service_env

# --- a toy fourth modality, defined here alone: a fixed-length float vector column (tabular features) ----------
# It is a plugin, as a user would write one: a module of their own package, registered under the
# `resmm.modalities` entry point group. Tests in this process register it by hand; the subprocess tests below
# install it on PYTHONPATH with its entry point, so every process they start (a model server) loads it too.

TOY_MODULE = '''
"""A toy modality: a fixed-length float vector column."""
import numpy as np
import pyarrow as pa
import torch
from pydantic import Field
from torch import nn

from resmm.data.decoded import DecodeError, decode_cells
from resmm.modalities.base import CellTypeError, ColumnType, Modality, Reference, Settings

SCALE = 1.0  # the edit-the-decoder test rewrites this line


class VectorCfg(Settings):
    dim: int = Field(4, ge=1)


def _vector_cell(cell, dim):
    if len(cell) != dim:
        raise DecodeError(f"{len(cell)} values, expected {dim}", "vector_wrong_length")
    return SCALE * np.asarray(cell, dtype=np.float32), None


def decode_vectors(cells, cfg):
    return decode_cells(cells, (cfg.dim,), lambda cell: _vector_cell(cell, cfg.dim))


def jitter(values, generator):
    return values + 0.01 * torch.randn(values.shape, generator=generator)


def request_cell(value, column):
    """A served vector: a JSON array of numbers (a list or an array from Python), or null."""
    if value is None:
        return None, False
    if isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(v, (int, float, np.number)) for v in value):
        return [float(v) for v in value], False
    raise CellTypeError(f"column '{column}' holds a {type(value).__name__}; expected an array of numbers or null")


VECTOR = Modality(
    name="vector", settings=VectorCfg,
    column=ColumnType(lambda t: pa.types.is_list(t) and pa.types.is_floating(t.value_type), "list<float>",
                      request_cell, {"type": "array", "items": {"type": "double"}}),
    decode=decode_vectors, input_shape=lambda cfg: (cfg.dim,), augment=jitter,
    build_encoder=lambda cfg, embed_dim, norm="batch": nn.Sequential(nn.Linear(cfg.dim, embed_dim), nn.ReLU()),
    example_cell=lambda cfg: [0.0] * cfg.dim,
    faults=("vector_wrong_length",),
    compact=lambda values, cfg: values.astype(np.float16),
    expand=lambda values, cfg: values.float() if values.dtype == torch.float16 else values,
    reference=Reference("vector linear", lambda cfg, num_classes: nn.Linear(cfg.dim, num_classes)),
)
'''


@pytest.fixture(scope="module")
def toy_plugin(tmp_path_factory) -> Path:
    """A directory holding the toy modality's module and its distribution's entry point: on PYTHONPATH, it is an
    installed plugin."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "resmm_toy_vector.py").write_text(TOY_MODULE)
    info = root / "resmm_toy_vector-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: resmm-toy-vector\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[resmm.modalities]\nvector = resmm_toy_vector:VECTOR\n")
    return root


@pytest.fixture
def toy(toy_plugin, monkeypatch):
    """The toy module, its record registered in this process."""
    monkeypatch.syspath_prepend(str(toy_plugin))
    module = importlib.import_module("resmm_toy_vector")
    monkeypatch.setitem(MODALITIES, "vector", module.VECTOR)
    return module


def toy_rows(rows: int, seed: int = 0) -> dict:
    """Two classes told apart by the vector alone; the images are noise, and every 5th row lacks its vector."""
    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(rows)]
    vectors = [None if i % 5 == 4 else list(rng.normal(2.0 * (2 * y - 1), 1.0, 4)) for i, y in enumerate(labels)]
    return {"sample_id": [f"r{i}" for i in range(rows)], "label": labels,
            "image": [png_bytes(8, 8, "RGB", seed=i) for i in range(rows)], "vector": vectors}


def test_a_fourth_modality_is_one_record_and_trains_end_to_end(toy):
    spec = PreprocessSpec(("image", "vector"), ("0", "1"), {"image": ImageCfg(size_px=8), "vector": toy.VectorCfg()})
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


def test_the_contract_checks_a_registered_modality_column(toy):
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
    code = ("import sys, resmm.modalities.spec, resmm.sources.contract, resmm.modalities; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the plugin through every stage that iterates the registry, in processes that load it by its entry point ----

TOY_PIPELINE = '''
import importlib, json, sys
from pathlib import Path

import mlflow, numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
from pipelines.feature_cache import CacheTarget, fill_shard, unpack_entries
from pipelines.ingest import scan_source
from pipelines.validation import Rules, _Verdicts
from resmm.baselines.reference import score_reference
from resmm.config import load_config
from resmm.modalities import MODALITIES
from resmm.modalities.compact import layout_of
from resmm.modalities.network import build_model
from resmm.modalities.spec import BatchPreprocessor, PreprocessSpec
from resmm.modalities.transforms import expand_batch
from resmm.tracking import registry
from resmm.tracking.pyfunc_model import UNREADABLE
import torch

work, rows = Path(sys.argv[1]), json.loads(sys.argv[2])
shards = work / "shards"
shards.mkdir()
table = pa.table({"sample_id": rows["sample_id"], "label": rows["label"], "image": pa.array(rows["image"], pa.binary()),
                  "vector": pa.array(rows["vector"], pa.list_(pa.float32()))})
pq.write_table(table, shards / "part-0.parquet")
cfg = load_config(None, ["model.modalities=[image,vector]", "data.image.size_px=8", "data.vector.dim=4",
                         "model.embed_dim=16", "model.norm=group"])
spec = PreprocessSpec.from_config(cfg.data, cfg.model.modalities, ("0", "1"))
shard = scan_source(str(shards), list(cfg.model.modalities)).shards[0]
rules = Rules(True, True, ("0", "1"), 0.25)

def fill():
    verdicts = fill_shard(shard, spec, rules, CacheTarget.at(str(work / "cache")), batch_rows=16)
    return verdicts, set(verdicts.column("cache_state").to_pylist())

def cached_vectors():
    entry = sorted((work / "cache").glob("*.parquet"), key=lambda p: p.stat().st_mtime)[-1]
    unpacked = unpack_entries(pq.read_table(entry), spec=spec, layout=layout_of(spec))
    return expand_batch({k: torch.from_numpy(v) for k, v in unpacked.items()}, spec)["vector"].numpy()

verdicts, first = fill()
counted = _Verdicts(spec.modalities)
counted.add(verdicts)
_, second = fill()
fresh = BatchPreprocessor(spec)(table.to_pydict())
before = cached_vectors()
toy = Path(sys.modules["resmm_toy_vector"].__file__)  # edit the decoder: every vector doubles
toy.write_text(toy.read_text().replace("SCALE = 1.0", "SCALE = 2.0"))
MODALITIES["vector"] = importlib.reload(sys.modules["resmm_toy_vector"]).VECTOR
_, after_edit = fill()

uri = f"sqlite:///{work}/mlflow.db"
client = mlflow.MlflowClient(uri)
run_id = client.create_run(client.create_experiment("toy", artifact_location=str(work / "artifacts"))).info.run_id
torch.manual_seed(0)
network = build_model(cfg.model, spec, "zero")
bundle = {"model": cfg.model.model_dump(mode="json"), "spec": spec.to_dict(), "impute": "zero"}
registry.log_and_register(tracking_uri=uri, run_id=run_id, registered_model="toy",
                          model_state=network.state_dict(), bundle=bundle, tags={})
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model("models:/toy/1")
request = pd.DataFrame({"sample_id": ["full", "no-vector", "short"], "image": [None, None, None],
                        "vector": [[1.0, 2.0, 3.0, 4.0], None, [1.0, 2.0]]})
served = model.predict(request)
try:
    model.predict(pd.DataFrame({"sample_id": ["bad"], "vector": ["one two"]}))
    refused = None
except Exception as exc:
    refused = str(exc)

decoded = {k: v for k, v in BatchPreprocessor(spec)(table.to_pydict()).items()}
half = len(rows["label"]) // 2
split = lambda part: {k: v[part] for k, v in decoded.items()}
reference = score_reference(cfg, split(slice(0, half)), split(slice(half, None)), ["0", "1"], 3, lambda _: None)
print(json.dumps({
    "modalities": list(cfg.model.modalities), "vector_dim": cfg.data.vector.dim,
    "marked_missing": dict(counted.report.modalities_marked_missing),
    "input_limits": dict(counted.report.input_limits),
    "cache_states": [sorted(first), sorted(second), sorted(after_edit)],
    "cached_minus_fresh": float(np.abs(before - fresh["vector"]).max()),
    "after_edit_over_before": float(np.nanmax(cached_vectors() / np.where(before == 0, np.nan, before))),
    "signature": str(model.metadata.get_input_schema().input_dict()["vector"]),
    "unreadable": served[UNREADABLE].tolist(), "probability_sums": served.filter(like="prob_").sum(1).tolist(),
    "refused": refused, "reference_models": sorted(reference["unimodal"]),
    "reference_name": MODALITIES["vector"].reference.name,
}))
'''


def test_a_plugin_modality_goes_through_validation_the_cache_serving_and_the_reference(toy_plugin, tmp_path):
    """The toy, loaded by its entry point alone: its faults are counted as faults, its cache entries are reused
    and re-decoded when its decoder changes, the registered pyfunc reads its JSON arrays (and refuses text), and
    the reference recipe trains its hand-written model. Nothing outside this file names it."""
    rows = toy_rows(40)
    rows["vector"][7] = [1.0, 2.0]  # a fault: the wrong length
    rows["image"] = [None] * 40  # JSON-safe; images are not what this test is about
    plugin = shutil.copytree(toy_plugin, tmp_path / "plugin")  # its own copy: this test edits the decoder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", TOY_PIPELINE, str(tmp_path), json.dumps(rows)], env=env,
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modalities"] == ["image", "vector"] and result["vector_dim"] == 4  # the config took it
    assert result["marked_missing"] == {"vector_wrong_length": 1} and result["input_limits"] == {}
    assert result["cache_states"] == [["built"], ["reused"], ["built"]]
    assert result["cached_minus_fresh"] < 2e-3  # its own fp16 compact form, widened by its own expand
    assert result["after_edit_over_before"] == pytest.approx(2.0)
    assert "Array(double)" in result["signature"]
    assert result["unreadable"] == ["", "", "vector"]
    assert result["probability_sums"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert "'vector': Array(double)" in result["refused"] and "got str" in result["refused"]  # its signature
    assert result["reference_models"] == ["vector"] and result["reference_name"] == "vector linear"

    # Over REST: `mlflow models serve` is one more process that loads the plugin by its entry point.
    url = f"http://127.0.0.1:{free_port()}"
    serve = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "models:/toy/1", "--env-manager",
             "local", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
    # An array column takes null for missing; an absent key becomes NaN, which MLflow's Array check refuses.
    records = [{"sample_id": "a", "vector": [1.0, 2.0, 3.0, 4.0]}, {"sample_id": "b", "vector": [1.0, 2.0]},
               {"sample_id": "c", "vector": None}]
    server_env = service_env(PYTHONPATH=env["PYTHONPATH"], MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    with running_service(serve, tmp_path / "serve.log", f"{url}/ping", server_env, timeout_s=180):
        request = urllib.request.Request(f"{url}/invocations", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"dataframe_records": records}).encode())
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                predictions = json.loads(response.read())["predictions"]
        except urllib.error.HTTPError as error:
            raise AssertionError(error.read().decode()) from None
    assert [row["unreadable_modalities"] for row in predictions] == ["", "vector", ""]
    assert all(abs(row["prob_0"] + row["prob_1"] - 1.0) < 1e-5 for row in predictions)
