"""Train, track and register a multimodal residual model.

    python jobs/train.py [--config YAML] [key=value ...] [--summary-json PATH]
"""
from __future__ import annotations

import sys

from _common import config_job_main  # also puts the repo root on sys.path


def train(cfg):
    from pipelines.training import run_training

    return run_training(cfg)


if __name__ == "__main__":
    sys.exit(config_job_main(__doc__, train))
