"""What every job entrypoint shares: config loading, one-line errors with exit code 2, the summary."""
from __future__ import annotations

import sys
from pathlib import Path

from pipelines.runtime import ClusterAccessError
from resmm.config import ConfigError, load_config
from resmm.data.feed import FeedStalled
from resmm.sources.contract import ContractError
from resmm.secrets import redact_text
from resmm.sources.shards import ShardError
from resmm.summary import write_json
from resmm.tracking.champion import ChampionMoveError
from resmm.tracking.runs import TrackingAccessError

REPO_ROOT = Path(__file__).resolve().parent.parent

USER_ERRORS = (ConfigError, ContractError, ShardError, TrackingAccessError, ClusterAccessError, ChampionMoveError,
               FeedStalled)
EXIT_USER_ERROR = 2


def report_user_error(exc: Exception) -> int:
    """One line on stderr (secrets masked), no traceback; the exit code for a user mistake."""
    print(f"resmm: {redact_text(str(exc))}", file=sys.stderr)
    return EXIT_USER_ERROR


def config_job_main(description: str, body, argv: list[str] | None = None) -> int:
    """The command line every config-driven job shares: [--config YAML] [key=value ...] [--summary-json PATH]."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (sections: data, model, train, mlflow, retrain)")
    parser.add_argument("--summary-json", help="write the run summary as JSON to this path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.fusion=gated train.epochs=2")
    args = parser.parse_args(argv)
    return run_job(body, args.config, args.overrides, args.summary_json)


def run_job(body, config_path, overrides, summary_path) -> int:
    """Run `body(cfg)`; a user mistake prints one line and returns 2, never a traceback."""
    try:
        cfg = load_config(config_path, overrides)
        summary = body(cfg)
    except USER_ERRORS as exc:
        return report_user_error(exc)
    if summary_path:
        write_json(summary, summary_path)
        print(f"[resmm] summary written to {summary_path}")
    return 0
