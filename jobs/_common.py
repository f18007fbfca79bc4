"""What every job entrypoint shares: import path, config loading, one-line errors with exit code 2, the summary."""
from __future__ import annotations

import sys
from pathlib import Path

# `python jobs/<name>.py` puts jobs/ on sys.path, not the repo root that holds resmm/ and pipelines/.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# isort: split

from resmm.config import ConfigError, load_config
from resmm.contract import ContractError
from resmm.shards import ShardError
from resmm.summary import write_json

USER_ERRORS = (ConfigError, ContractError, ShardError)
EXIT_USER_ERROR = 2


def run_job(body, config_path, overrides, summary_path) -> int:
    """Run `body(cfg)`; a user mistake prints one line and returns 2, never a traceback."""
    try:
        cfg = load_config(config_path, overrides)
        summary = body(cfg)
    except USER_ERRORS as exc:
        print(f"resmm: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if summary_path:
        write_json(summary, summary_path)
        print(f"[resmm] summary written to {summary_path}")
    return 0
