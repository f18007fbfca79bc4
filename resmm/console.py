"""What a person sees while resmm runs: progress lines, one progress bar per stage, and quiet frameworks.

Ray's and MLflow's INFO logs (execution plans, packaging, per-report dicts) stay out of the console by default
and are kept in Ray's log directory; `RESMM_LOG_LEVEL=INFO` (or DEBUG) brings them back to the console.
"""
from __future__ import annotations

import logging
import os
import sys

from tqdm.auto import tqdm

from resmm.secrets import redact_text

LOG_LEVEL_ENV = "RESMM_LOG_LEVEL"


def framework_log_level() -> int:
    """The console level of Ray's and MLflow's loggers: WARNING unless RESMM_LOG_LEVEL says otherwise."""
    name = os.environ.get(LOG_LEVEL_ENV, "WARNING").upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.WARNING


def verbose() -> bool:
    """True when the frameworks' INFO logs (and Ray workers' output) should reach the console."""
    return framework_log_level() <= logging.INFO


def quiet_frameworks() -> None:
    """Apply RESMM_LOG_LEVEL to the frameworks' console output in this process.

    Ray Data's file handler (ray-data.log in the session's log directory) keeps logging at its own level; only
    its console handler is raised. Ray's own logger level is set by `ray.init(logging_level=...)`.
    """
    level = framework_log_level()
    logging.getLogger("mlflow").setLevel(level)
    if level > logging.INFO:  # MLflow draws a bar for every artifact download (model loads, input checks)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    data_logger = logging.getLogger("ray.data")
    for handler in data_logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(max(handler.level, level))


def say(message: str) -> None:
    """A progress line with secrets masked: the default `progress` of resmm's pipelines. Written through tqdm,
    so a line printed while a bar is drawn lands above the bar instead of through it."""
    tqdm.write(redact_text(message), file=sys.stdout)
    sys.stdout.flush()


def progress_bar(total: int | None, description: str, unit: str = "rows") -> tqdm:
    """One stage's bar on stdout (rate, ETA); on a non-interactive stdout (a log file, `ray job submit`) it
    redraws at most every 5 s, so logs stay small."""
    interactive = sys.stdout.isatty()
    return tqdm(total=total, desc=description, unit=unit, file=sys.stdout, dynamic_ncols=interactive,
                ncols=None if interactive else 100, mininterval=0.2 if interactive else 5.0, leave=True)
