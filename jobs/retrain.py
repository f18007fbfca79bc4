"""Scheduled retraining: train a challenger on new data and promote it over the champion only if it is better.

    python jobs/retrain.py [--config YAML] [key=value ...] [--summary-json PATH]

Exit code 0 for every decision (promoted, rejected, skipped: no new data or another retrain holds the lock);
2 for a configuration or data-contract error.
"""
from __future__ import annotations

import argparse
import sys

from _common import run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (sections: data, model, train, mlflow, retrain)")
    parser.add_argument("--summary-json", help="write the decision and scores as JSON to this path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. retrain.min_improvement=0.01")
    args = parser.parse_args(argv)

    def retrain(cfg):
        from pipelines.retraining import run_retrain

        return run_retrain(cfg)

    return run_job(retrain, args.config, args.overrides, args.summary_json)


if __name__ == "__main__":
    sys.exit(main())
