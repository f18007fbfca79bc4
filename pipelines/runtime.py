"""The Ray runtime every entrypoint shares: connecting to a cluster (or a local instance) and the one place that
configures this process's global Ray Data `DataContext`."""
from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import ray

from pipelines.ray_data_limits import start_coordinator
from resmm import console
from resmm.config import Config
from resmm.console import say
from resmm.train.driver import configure_execution

# Blocks of 8 MiB instead of Ray's 128 MiB: encoded media decode to several times their size, and a read+decode
# task's first output (which an epoch's first batch waits for) comes after one block (benchmarks/results/).
BLOCK_BYTES = 8 * 2**20


class ClusterAccessError(RuntimeError):
    """RAY_ADDRESS names a cluster this process cannot use; the message is one line that names the fix."""


GCS_PROBE_TIMEOUT_S = 5.0
REFUSED = ("the Ray cluster at {address} refused this client: it needs the cluster's token, which is missing or "
           "wrong here. Set RAY_AUTH_TOKEN to what `ray get-auth-token` prints on the head (or RAY_AUTH_TOKEN_PATH "
           "to its file), with RAY_AUTH_MODE=token")
_TOKEN_CHECK = ("import sys; from ray._raylet import GcsClient; "
                "GcsClient(address=sys.argv[1]).internal_kv_get(b'x', None)")


def init_cluster(address: str, options: dict):
    """ray.init(address), with the mistakes a user can make said in one line and within seconds: nothing
    listening there (ray.init would retry for minutes), or a token that is missing or wrong (Ray's GCS client
    retries a wrong one for about a minute, with a warning line per try)."""
    from ray.exceptions import AuthenticationError

    if address not in ("auto", "local"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=GCS_PROBE_TIMEOUT_S).close()
        except (OSError, ValueError):
            raise ClusterAccessError(f"no Ray cluster answers at RAY_ADDRESS={address} (nothing accepted a "
                                     f"connection within {GCS_PROBE_TIMEOUT_S:.0f} s): start the head or fix "
                                     "the address") from None
        if not address.startswith("ray://") and token_refused(address):
            raise ClusterAccessError(REFUSED.format(address=address))
    try:
        return ray.init(address=address, **options)
    except AuthenticationError:
        raise ClusterAccessError(REFUSED.format(address=address)) from None


def token_refused(address: str, timeout_s: float = 20.0) -> bool:
    """Whether the GCS at `address` refuses this process's token, asked in a child process whose retries and
    log lines stay there."""
    import subprocess
    import sys

    try:
        probe = subprocess.run([sys.executable, "-c", _TOKEN_CHECK, address], capture_output=True, text=True,
                               timeout=timeout_s)
        said = probe.stderr if probe.returncode != 0 else ""
    except subprocess.TimeoutExpired as exc:  # still retrying: its log says why
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
    return "InvalidAuthToken" in said or "Unauthenticated" in said


def connect_ray() -> None:
    """RAY_ADDRESS (set by `ray job submit` too) if given; otherwise a fresh local Ray instance.

    A local instance ships `resmm` and `pipelines` as py_modules only where a worker started from this
    interpreter would import other code than the driver runs (a checkout beside another install): workers then
    import the very code the driver runs, installed or not. Otherwise the workers Ray starts with the instance
    serve at once, instead of fresh ones started for the py_modules environment (about a second of every run).
    Under `ray job submit` the job's own runtime_env (working_dir) provides them. The frameworks' INFO logs and
    the workers' output stay in Ray's log directory unless RESMM_LOG_LEVEL=INFO.
    """
    configure_data_context()
    if ray.is_initialized():
        return
    options = {"log_to_driver": console.verbose(), "logging_level": console.framework_log_level()}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        context = init_cluster(address, options)
    else:
        use_local_token()
        context = ray.init(address="local", runtime_env=local_code_env(), **options)
    start_coordinator()  # pipelines/ray_data_limits.py: up before the first Ray Data execution needs it
    console.quiet_frameworks()
    if not console.verbose():
        say(f"[resmm] Ray's logs: {context.address_info['session_dir']}/logs "
            f"(set {console.LOG_LEVEL_ENV}=INFO to see them here)")


_SHIPPED = ("resmm", "pipelines")
_FIND = ("import importlib.util, json, sys; sys.path[0:0] = json.loads(sys.argv[1]); "
         "print('\\n'.join(importlib.util.find_spec(m).origin for m in sys.argv[2:]))")


def local_code_env() -> dict:
    """The runtime_env of a local instance: {} where a worker, started from this interpreter with the paths Ray
    puts in front of its sys.path, imports the same `resmm` and `pipelines` files as this process; else both as
    py_modules."""
    import importlib
    import json
    import subprocess
    import sys
    import tempfile

    mine = [str(Path(importlib.import_module(m).__file__).resolve()) for m in _SHIPPED]
    try:
        found = subprocess.run([sys.executable, "-c", _FIND, json.dumps(worker_search_path()), *_SHIPPED],
                               capture_output=True, text=True, timeout=30, cwd=tempfile.gettempdir()).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        found = []
    if [str(Path(f).resolve()) for f in found] == mine:
        return {}
    return {"py_modules": [str(Path(m).parent) for m in mine]}


def worker_search_path() -> list[str]:
    """The directories a local Ray worker finds in front of its sys.path (ray/_private/worker.py connect): this
    process's current directory, and its script's directory where its own sys.path holds it."""
    import sys

    paths = [os.path.abspath(os.curdir)]
    script = os.path.dirname(os.path.realpath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    if script and script in sys.path:
        paths.append(script)
    return paths


def configure_data_context(cfg: Config | None = None) -> None:
    """Set this process's Ray Data context; it travels with every dataset the process builds, the Train
    workers' ingest included. Without `cfg`, only the settings that hold for every run.

    Progress bars are off because resmm draws one bar per stage (validation, each epoch, robustness); Ray
    Data's own, on a non-interactive stdout, become blocks of log lines every few seconds that repeat them.
    """
    from ray.util.debug import log_once

    context = ray.data.DataContext.get_current()
    context.target_max_block_size = BLOCK_BYTES
    context.enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # Ray's notice that its bars are off: this is why
    if cfg is not None:
        configure_execution(context.execution_options, cfg)


def use_local_token() -> None:
    """Token authentication for a local instance, as on every Ray cluster. Without a token of the user's own
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), the instance gets a fresh one that lives in this
    process's environment only, so a local run writes nothing to ~/.ray. RAY_AUTH_MODE=disabled is respected."""
    if os.environ.get("RAY_AUTH_MODE", "token") != "token":
        return
    has_token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                 or (Path.home() / ".ray" / "auth_token").exists())
    if not has_token:
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    if os.environ.get("RAY_AUTH_MODE") != "token":
        # Ray's own switch: sets RAY_AUTH_MODE and reloads the config Ray read at import. Choosing the mode
        # explicitly is also what keeps Ray from warning that it turned token authentication on by default.
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
