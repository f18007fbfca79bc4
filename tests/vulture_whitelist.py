"""Names vulture cannot see being used, for tests/test_architecture.py: the summary JSON's fields are read by
people and schedulers through `TrainingSummary.as_dict()`, never as attributes."""
from resmm.summary import TrainingSummary

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
