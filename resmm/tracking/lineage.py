"""Data lineage on MLflow runs: the training data logged with `mlflow.log_input` under its fingerprint."""
from __future__ import annotations

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException

from resmm.secrets import redact_text


def log_training_data(tracking_uri: str, run_id: str, data_url: str, fingerprint: dict, context: str = "training"):
    """Record which shards trained the run: a metadata-only dataset whose digest is the data fingerprint."""
    data_url = redact_text(data_url)
    try:
        source = resolve_dataset_source(data_url)
    except MlflowException:
        source = HTTPDatasetSource(url=data_url)  # any URL MLflow has no specific source type for
    dataset = MetaDataset(source=source, name=data_url.rstrip("/").rsplit("/", 1)[-1] or data_url,
                          digest=fingerprint["digest"][:36])
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(dataset, context=context)
