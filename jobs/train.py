"""Train, track and register a multimodal residual model.

    python jobs/train.py [--config YAML] [key=value ...] [--summary-json PATH]
"""
from __future__ import annotations

import argparse
import sys

from _common import run_job  # also puts the repo root on sys.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (sections: data, model, train, mlflow)")
    parser.add_argument("--summary-json", help="write the run summary as JSON to this path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.fusion=concat train.epochs=2")
    args = parser.parse_args(argv)

    def train(cfg):
        from pipelines.training import run_training

        return run_training(cfg)

    return run_job(train, args.config, args.overrides, args.summary_json)


if __name__ == "__main__":
    sys.exit(main())
