"""MLflow runs: one run per job, created by the driver; workers (rank 0) log epoch metrics into it by id."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import mlflow
from mlflow.tracking import MlflowClient

from resmm.secrets import redact

_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def resolve_tracking_uri() -> str:
    """The tracking URI every process must share: $MLFLOW_TRACKING_URI, else MLflow's default (absolute sqlite)."""
    return mlflow.get_tracking_uri()


RAY_RUN_TAG = "resmm.ray_train_run_name"
RUN_KEY_TAG = "resmm.run_key"  # run_key(config, data) of a run named by default
# The driver beats while its run is open; a RUNNING run silent for three beats lost its driver. Every driver
# that shares an experiment must use the same interval (RESMM_HEARTBEAT_SECONDS; tests shorten it).
HEARTBEAT_TAG = "resmm.heartbeat_unix_s"
HEARTBEAT_EVERY_S = float(os.environ.get("RESMM_HEARTBEAT_SECONDS", "60"))
ORPHAN_AFTER_S = 3 * HEARTBEAT_EVERY_S
END_REASON_TAG = "resmm.end_reason"


class TrackingAccessError(RuntimeError):
    """The tracking server is unreachable or refuses the credentials; a one-line message says which."""


def check_tracking_access(tracking_uri: str, timeout_s: float = 15) -> None:
    """One authenticated request to an HTTP tracking server, so that a wrong password or a dead server
    fails the job in seconds with a clear message instead of after minutes of client retries."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests

    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    auth = (username, password) if username and password else None
    headers = {"Authorization": f"Bearer {token}"} if token and auth is None else {}
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/experiments/search"
    try:
        response = requests.get(url, params={"max_results": 1}, auth=auth, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise TrackingAccessError(f"cannot reach the MLflow server at {tracking_uri}: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        given = "were refused" if (auth or headers) else "are missing"
        raise TrackingAccessError(
            f"the MLflow server at {tracking_uri} answered HTTP {response.status_code}: credentials {given}; set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
        )
    if response.status_code >= 400:
        raise TrackingAccessError(f"the MLflow server at {tracking_uri} answered HTTP {response.status_code}")


def run_key(config_digest: str, data_digest: str) -> str:
    """The default name of a run: the same config on the same data gives the same key, so a job resubmitted
    after its driver was lost (KubeRay's RayJob backoffLimit) finds its run without anyone naming it."""
    return "resmm-" + hashlib.sha256(f"{config_digest}|{data_digest}".encode()).hexdigest()[:12]


def start_run(tracking_uri: str, experiment: str, run_name: str | None, params: dict, tags: dict,
              key: str | None = None) -> tuple[str, str]:
    """Create the job's run (creating the experiment on first use), log the whole resolved config as params;
    returns (run id, run name). The MLflow run is named like the Ray Train run.

    With an explicit Ray Train run name, an unfinished run of the same name is reused: a retried job resumes
    its Ray Train checkpoint and keeps logging into the same MLflow run instead of duplicating it. Without one,
    `key` (run_key) names it: a run of that key whose driver is gone (FAILED, or KILLED as an orphan) is resumed
    the same way; otherwise the key names a new run, `<key>-<n>` once earlier runs of the key finished.
    Runs whose driver stopped beating (close_orphaned_runs) are closed first.
    """
    params, tags = redact(params), redact(tags)  # a URL with a password, a key that reads like a secret
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    close_orphaned_runs(client, experiment_id)
    if not run_name and key:
        run_name, tags = run_name_for_key(client, experiment_id, key), {**tags, RUN_KEY_TAG: key}
    if run_name:
        tags = {**tags, RAY_RUN_TAG: run_name}
        previous = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RAY_RUN_TAG}` = '{run_name}' and attributes.status != 'FINISHED'",
            max_results=1,
        )
        if previous:
            run_id = previous[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            beat(client, run_id)
            return run_id, run_name
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    beat(client, run.info.run_id)
    run_id = run.info.run_id
    if not run_name:
        run_name = f"resmm-{run_id[:12]}"
        client.update_run(run_id, name=run_name)
        client.set_tag(run_id, RAY_RUN_TAG, run_name)
    log_params(tracking_uri, run_id, params)
    return run_id, run_name


def run_name_for_key(client: MlflowClient, experiment_id: str, key: str) -> str:
    """The Ray Train run name for a run key: that of its run whose driver is gone, if any; else a fresh one."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", max_results=1000)
    for run in runs:
        if run.info.status in ("FAILED", "KILLED") and RAY_RUN_TAG in run.data.tags:
            return run.data.tags[RAY_RUN_TAG]
    return key if not runs else f"{key}-{len(runs) + 1}"


def beat(client: MlflowClient, run_id: str) -> None:
    """The driver's sign of life on its run (HEARTBEAT_TAG, seconds since the epoch)."""
    client.set_tag(run_id, HEARTBEAT_TAG, str(int(time.time())))


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose driver has not beaten for ORPHAN_AFTER_S (a lost head or a SIGKILLed
    driver never ends its run); returns their ids. Runs without a heartbeat (older resmm) are left alone. A driver
    silent that long only because MLflow was down ends its run FINISHED all the same."""
    now, closed = time.time(), []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        last_beat = run.data.tags.get(HEARTBEAT_TAG)
        if last_beat is None or now - float(last_beat) < ORPHAN_AFTER_S:
            continue
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(last_beat)))
        client.set_tag(run.info.run_id, END_REASON_TAG, f"driver lost: no heartbeat since {since}")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed


def log_params(tracking_uri: str, run_id: str, params: dict) -> None:
    """Params in batches of 100 (log_batch's limit); a resumed run re-logs the same values, which MLflow allows."""
    client = MlflowClient(tracking_uri)
    param_items = [(k, _param_text(v)) for k, v in sorted(redact(params).items())]
    for start in range(0, len(param_items), 100):
        client.log_batch(
            run_id, params=[mlflow.entities.Param(k, v) for k, v in param_items[start : start + 100]]
        )


def _param_text(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:_MAX_PARAM_CHARS]


# MLflow takes letters, digits and `_-. :/` in a metric name; a class or candidate name may hold anything else.
_NOT_IN_METRIC_NAME = re.compile(r"[^\w\-. :/]")


def metric_name(name: str) -> str:
    """`name` with every character MLflow refuses in a metric name replaced by '_' (`fed_rows/T&C` → `fed_rows/T_C`,
    `predictor/fused+late:equal/…` → `predictor/fused_late:equal/…`)."""
    return _NOT_IN_METRIC_NAME.sub("_", str(name))


def log_metrics(tracking_uri: str, run_id: str, metrics: dict, step: int) -> None:
    """Log the scalar entries of `metrics` under the names given (non-scalars such as confusion matrices are
    skipped). Names are grouped with '/' (`val/accuracy`, `quarantine/null_label`) so the UI sections them."""
    scalars = {
        metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }
    # Real timestamps: a resumed epoch logs the same step again, and MLflow's logged-model metrics are unique
    # per (name, timestamp, step).
    now_ms = int(time.time() * 1000)
    MlflowClient(tracking_uri).log_batch(
        run_id, metrics=[mlflow.entities.Metric(k, v, now_ms, step) for k, v in scalars.items()]
    )


def epoch_metric_name(key: str) -> str:
    """The MLflow name of one of the training loop's metric keys, grouped by split and head:
    `val_balanced_accuracy` -> `val/balanced_accuracy`, `val_head_image_accuracy` -> `val/head/image/accuracy`,
    `train_loss_head_audio` -> `train/head/audio/loss`, `train_samples_per_s` -> `train/samples_per_s`.
    The loop, its checkpoints and the summary keep the flat keys; only MLflow sees these names."""
    split, _, rest = key.partition("_")
    if split not in ("train", "val") or not rest:
        return key
    if rest.startswith("head_"):  # val_head_<modality>_<metric>
        modality, _, metric = rest.removeprefix("head_").partition("_")
        return f"{split}/head/{modality}/{metric}"
    if rest.startswith("loss_head_"):  # train_loss_head_<modality>
        return f"{split}/head/{rest.removeprefix('loss_head_')}/loss"
    return f"{split}/{rest}"


def log_epoch_metrics(tracking_uri: str, run_id: str, metrics: dict, epoch: int) -> None:
    """One epoch's metrics at step `epoch`; the epoch number itself is the step, not a metric."""
    log_metrics(tracking_uri, run_id, {epoch_metric_name(k): v for k, v in metrics.items() if k != "epoch"}, epoch)


def epoch_metric_history(tracking_uri: str, run_id: str, keys: list[str]) -> dict[str, dict[int, float]]:
    """{flat metric key: {epoch: value}} of the training loop's epoch metrics, read back from the run."""
    client = MlflowClient(tracking_uri)
    return {key: {m.step: m.value for m in client.get_metric_history(run_id, epoch_metric_name(key))}
            for key in keys}


# Ray Train does not report how often it restarted the worker group, so rank 0 counts the group's starts in
# this run tag and the driver compares the count before and after its fit.
WORKER_GROUP_STARTS_TAG = "resmm.worker_group_starts"


def worker_group_starts(tracking_uri: str, run_id: str) -> int:
    return int(MlflowClient(tracking_uri).get_run(run_id).data.tags.get(WORKER_GROUP_STARTS_TAG, "0"))


def record_worker_group_start(tracking_uri: str, run_id: str) -> None:
    """Called by rank 0 only, once per worker group: groups never overlap, so the read-increment is safe."""
    MlflowClient(tracking_uri).set_tag(
        run_id, WORKER_GROUP_STARTS_TAG, str(worker_group_starts(tracking_uri, run_id) + 1)
    )


def set_tags(tracking_uri: str, run_id: str, tags: dict) -> None:
    client = MlflowClient(tracking_uri)
    for key, value in redact(tags).items():
        client.set_tag(run_id, key, str(value))


def log_dict(tracking_uri: str, run_id: str, payload: dict, artifact_file: str) -> None:
    MlflowClient(tracking_uri).log_dict(run_id, redact(payload), artifact_file)


def log_table(tracking_uri: str, run_id: str, columns: dict, artifact_file: str) -> None:
    """A table MLflow's UI can show and compare across runs (columns: name -> list of values)."""
    import pandas as pd

    MlflowClient(tracking_uri).log_table(run_id, pd.DataFrame(columns), artifact_file)


def log_figure(tracking_uri: str, run_id: str, figure, artifact_file: str) -> None:
    MlflowClient(tracking_uri).log_figure(run_id, figure, artifact_file)


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    """status: FINISHED, FAILED or KILLED."""
    MlflowClient(tracking_uri).set_terminated(run_id, status=status)


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run of the driver, so that stages log into it without threading (uri, run id) around."""

    tracking_uri: str
    run_id: str
    run_name: str  # the Ray Train run of the same name

    def log_metrics(self, metrics: dict, step: int) -> None:
        log_metrics(self.tracking_uri, self.run_id, metrics, step)

    def log_params(self, params: dict) -> None:
        log_params(self.tracking_uri, self.run_id, params)

    def log_dict(self, payload: dict, artifact_file: str) -> None:
        log_dict(self.tracking_uri, self.run_id, payload, artifact_file)

    def log_table(self, columns: dict, artifact_file: str) -> None:
        log_table(self.tracking_uri, self.run_id, columns, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        """Log a matplotlib figure and close it."""
        from resmm.tracking import plots

        try:
            log_figure(self.tracking_uri, self.run_id, figure, artifact_file)
        finally:
            plots.close(figure)

    def set_tags(self, tags: dict) -> None:
        set_tags(self.tracking_uri, self.run_id, tags)


@contextlib.contextmanager
def tracked_run(tracking_uri: str, experiment: str, run_name: str | None, params: dict,
                tags: dict, key: str | None = None) -> Iterator[TrackedRun]:
    """Start (or resume, see start_run) the job's run; it ends FINISHED when the body returns and FAILED when
    it raises, interrupts included. While it is open, a daemon thread beats every HEARTBEAT_EVERY_S."""
    run_id, run_name = start_run(tracking_uri, experiment, run_name, params, tags, key)
    stop = threading.Event()
    beating = threading.Thread(target=_beat_until, args=(tracking_uri, run_id, stop), daemon=True,
                               name="resmm-heartbeat")
    beating.start()
    try:
        yield TrackedRun(tracking_uri, run_id, run_name)
    except BaseException:
        end_run(tracking_uri, run_id, "FAILED")
        raise
    finally:
        stop.set()
    end_run(tracking_uri, run_id, "FINISHED")


def _beat_until(tracking_uri: str, run_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_EVERY_S):
        try:
            beat(MlflowClient(tracking_uri), run_id)
        except Exception:  # a missed beat is retried at the next; the run itself must not fail for it
            continue
