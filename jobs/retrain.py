"""Scheduled retraining: train a challenger on new data and promote it over the champion only if it is better.

    python jobs/retrain.py [--config YAML] [key=value ...] [--summary-json PATH]

Exit code 0 for every decision (promoted, rejected, skipped: no new data or another retrain holds the lock);
2 for a configuration or data-contract error.
"""
from __future__ import annotations

import sys

from _common import config_job_main  # also puts the repo root on sys.path


def retrain(cfg):
    from pipelines.retraining import run_retrain

    return run_retrain(cfg)


if __name__ == "__main__":
    sys.exit(config_job_main(__doc__, retrain))
