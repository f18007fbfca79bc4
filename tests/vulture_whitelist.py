"""Names vulture cannot see being used, for tests/test_architecture.py: the summary JSON's fields are read by
people and schedulers through `TrainingSummary.as_dict()`, never as attributes; and Ray Data's own state that
pipelines/ray_data_limits.py sets for Ray to read."""
from ray.data._internal.execution.resource_manager import ResourceManager

from resmm.summary import TrainingSummary

ResourceManager._global_limits_last_update_time

TrainingSummary.mlflow_run_id
TrainingSummary.mlflow_experiment
TrainingSummary.mlflow_tracking_uri
TrainingSummary.model_version
TrainingSummary.ray_train_run_name
TrainingSummary.rows_seen_train
TrainingSummary.train_time_s
TrainingSummary.throughput_samples_per_s
TrainingSummary.data_profile
TrainingSummary.fed_class_counts
