"""Data lineage on MLflow runs: the training data logged as the run's dataset input under its fingerprint."""
from __future__ import annotations

from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from resmm.secrets import redact_text


def log_training_data(tracking_uri: str, run_id: str, data_url: str, fingerprint: dict, context: str = "training"):
    """Record which shards trained the run: a metadata-only dataset whose digest is the data fingerprint."""
    data_url = redact_text(data_url)
    dataset = MetaDataset(source=dataset_source(data_url), name=data_url.rstrip("/").rsplit("/", 1)[-1] or data_url,
                          digest=fingerprint["digest"][:36])
    # By run id, like every other call: `mlflow.start_run(run_id=...)` would mark the run FINISHED on exit,
    # while it is still training.
    MlflowClient(tracking_uri).log_inputs(
        run_id, [DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
    )


def dataset_source(data_url: str):
    """The first registered MLflow dataset source type that takes the URL; an HTTP source for any other URL.

    Asked one type at a time: MLflow registers two local-file source types (for '' and 'file://'), and asking
    them all at once warns that a plain path "can be interpreted in multiple ways" on every run.
    """
    for source_type in get_registered_sources():
        try:
            return resolve_dataset_source(data_url, candidate_sources=[source_type])
        except MlflowException:
            continue
    return HTTPDatasetSource(url=data_url)
