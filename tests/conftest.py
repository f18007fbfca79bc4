"""Shared test helpers: tiny contract batches and shards, built with the same encoders users' data goes through."""
from __future__ import annotations

import io
import os
import secrets
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
RESMM = str(Path(sys.executable).parent / "resmm")  # the console script `make test` installs (pip install -e .)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


RAY_TOKEN_FILE = Path.home() / ".ray" / "auth_token"
_TOKEN_FILE_BEFORE: tuple | None = None


def token_file_state() -> tuple | None:
    try:
        stat = RAY_TOKEN_FILE.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def pytest_configure(config):
    """Every Ray this test run starts or joins uses a fresh token of its own, passed by environment.

    Ray 2.60 otherwise reads (and a local `ray.init` writes) the user's ~/.ray/auth_token, and a
    `ray start --head` with RAY_AUTH_MODE=token refuses to start where that file does not exist yet.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    global _TOKEN_FILE_BEFORE
    _TOKEN_FILE_BEFORE = token_file_state()


def pytest_sessionfinish(session, exitstatus):
    """The run fails if anything it started wrote the user's ~/.ray/auth_token."""
    if token_file_state() != _TOKEN_FILE_BEFORE:
        sys.stderr.write(f"\nFAILED: the test run created or changed {RAY_TOKEN_FILE}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def png_bytes(height: int = 28, width: int = 28, mode: str = "L", seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=shape, dtype=np.uint8), mode).save(buffer, fmt)
    return buffer.getvalue()


def audio_bytes(seconds: float = 0.5, rate: int = 16000, channels: int = 1, fmt: str = "WAV", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    samples = (rng.normal(0, 0.1, (int(seconds * rate), channels))).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def contract_table(rows: int = 12, seed: int = 0, label_type=pa.int64()) -> pa.Table:
    labels = [i % 3 for i in range(rows)]
    return pa.table(
        {
            "sample_id": pa.array([f"s{seed}-{i}" for i in range(rows)], pa.string()),
            "label": pa.array(labels if label_type != pa.string() else [str(v) for v in labels], label_type),
            "image": pa.array([png_bytes(seed=seed + i) for i in range(rows)], pa.binary()),
            "text": pa.array([f"item {['zero', 'one', 'two'][v]}" for v in labels], pa.string()),
            "audio": pa.array([audio_bytes(0.2, seed=seed + i) for i in range(rows)], pa.binary()),
        }
    )


@pytest.fixture
def shard_dir(tmp_path) -> Path:
    """Three valid shards of the contract."""
    for shard in range(3):
        pq.write_table(contract_table(seed=shard * 100), tmp_path / f"part-{shard}.parquet")
    return tmp_path


@pytest.fixture(scope="session")
def local_ray():
    """An in-process local Ray instance (never an existing cluster on this machine), shared by the session."""
    import os

    import ray

    from pipelines.runtime import connect_ray

    saved = os.environ.pop("RAY_ADDRESS", None)
    connect_ray()
    yield
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved


def make_batch(spec, rows=4, seed=0):
    """A model-ready batch of random inputs, every modality present, labels 0..4 in turn."""
    import torch

    g = torch.Generator().manual_seed(seed)
    batch = {m: torch.randn(rows, *spec.input_shape(m), generator=g) for m in ("image", "audio")}
    text_shape = (rows, *spec.input_shape("text"))
    batch["text"] = torch.randint(1, spec.settings["text"].vocab_buckets, text_shape, generator=g)
    for m in ("image", "text", "audio"):
        batch[f"{m}_present"] = torch.ones(rows)
    batch["label"] = torch.arange(rows) % 5
    return batch
