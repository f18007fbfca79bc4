"""Scheduled retraining: train a challenger on new data and promote it over the champion only if it is better.

    resmm retrain [--config YAML] [key=value ...] [--summary-json PATH]

Exit code 0 for every decision (promoted, rejected, skipped: no new data or another retrain holds the lock);
2 for a configuration or data-contract error.
"""
from __future__ import annotations

import sys

if not __package__:  # python jobs/retrain.py
    import _bootstrap  # noqa: F401

from jobs._common import config_job_main


def retrain(cfg):
    from pipelines.retraining import run_retrain

    return run_retrain(cfg)


def main(argv: list[str] | None = None) -> int:
    return config_job_main(__doc__, retrain, argv)


if __name__ == "__main__":
    sys.exit(main())
