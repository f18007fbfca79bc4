"""Resampling on the stream with 2 real DDP workers: the fed class mix matches the strategy (10:1 input)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import submit_job

pytestmark = pytest.mark.e2e

MAJORITY, MINORITY = 1000, 100


@pytest.fixture(scope="module")
def imbalanced_dir(tmp_path_factory):
    """Text-only shards, 10:1 between two classes, with one sample_id hash split kept out (val)."""
    root = tmp_path_factory.mktemp("imbalanced")
    labels = ["common"] * MAJORITY + ["rare"] * MINORITY
    texts = [f"{'apple' if label == 'common' else 'zebra'} item {i}" for i, label in enumerate(labels)]
    table = pa.table({"sample_id": [f"r{i}" for i in range(len(labels))], "label": labels, "text": texts})
    for shard in range(4):
        pq.write_table(table.slice(shard * 275, 275), root / f"part-{shard}.parquet")
    return root


def fed_counts(ray_head, mlflow_server, data_dir, out_dir, strategy: str) -> tuple[dict, dict]:
    summary_path = out_dir / f"{strategy}.json"
    completed = submit_job(
        ray_head,
        ["jobs/train.py", f"data.path={data_dir}", "model.modalities=[text]", "model.embed_dim=16",
         "train.num_workers=2", "train.epochs=1", "train.batch_size_per_worker=32", f"data.resample={strategy}",
         f"train.storage_path={out_dir / 'runs'}", "mlflow.experiment=e2e-resample",
         "mlflow.registered_model=resmm-resample", "--summary-json", str(summary_path)],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    return summary["fed_class_counts"], summary["data_profile"]


def test_balanced_resampling_feeds_each_class_equally(ray_head, mlflow_server, imbalanced_dir, tmp_path):
    fed, profile = fed_counts(ray_head, mlflow_server, imbalanced_dir, tmp_path, "balanced")
    train_common, train_rare = profile["class_counts"]["common"], profile["class_counts"]["rare"]
    assert 8 < train_common / train_rare < 12  # the input really is 10:1
    total = fed["common"] + fed["rare"]
    # Expected half each of ~990 rows; Poisson sd ≈ 22 rows per class, so ±12% of the total is over 5 sd.
    assert total > 0.85 * profile["rows"]
    assert abs(fed["common"] / total - 0.5) < 0.12, fed


def test_sqrt_resampling_feeds_classes_in_proportion_to_root_counts(ray_head, mlflow_server, imbalanced_dir, tmp_path):
    fed, profile = fed_counts(ray_head, mlflow_server, imbalanced_dir, tmp_path, "sqrt")
    expected = (profile["class_counts"]["common"] / profile["class_counts"]["rare"]) ** 0.5  # ≈ 3.16
    ratio = fed["common"] / fed["rare"]
    assert 0.75 * expected < ratio < 1.33 * expected, (fed, expected)
