"""Train, track and register a multimodal residual model.

    resmm train [--config YAML] [key=value ...] [--summary-json PATH]

Examples:
    resmm train                                            # the built-in demo, local Ray, ./mlflow.db
    resmm train data.path=s3://bucket/shards/ train.num_workers=4 train.use_gpu=true
    resmm train --config jobs/configs/example.yaml model.fusion=gated --summary-json summary.json
    ray job submit --working-dir . -- python jobs/train.py data.path=...   # on a cluster, the same arguments
"""
from __future__ import annotations

import sys

if not __package__:  # python jobs/train.py
    import _bootstrap  # noqa: F401

from jobs._common import config_job_main


def train(cfg):
    from pipelines.training import run_training

    return run_training(cfg)


def main(argv: list[str] | None = None) -> int:
    return config_job_main(__doc__, train, argv)


if __name__ == "__main__":
    sys.exit(main())
