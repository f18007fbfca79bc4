"""Three real Ray nodes on one machine, labelled as the manifests label them (infra/raycluster.yaml): a head with
no CPUs, a `data` node and a `train` node, token auth on.

- Placement: a training job through `ray job submit` runs every Ray Data task on the data node and every Train
  worker on the train node (Ray's state API says where); each node's CPU seconds are recorded.
- Node loss: a node SIGKILLed mid-epoch (its raylet and every worker on it, no warning), and one like it added
  back, as a cloud's autoscaler replaces a preempted machine.
- Head loss: the whole cluster, driver included, SIGKILLed; a fresh cluster and the identical command resume.

Every wait is bounded; each test asserts one MLflow run and one registered version."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mlflow.tracking import MlflowClient

from tests.e2e.conftest import (BIN, assert_each_row_fed_once_per_epoch, checkpoint_within_epoch, free_port,
                               job_submit_command, service_env, stop, submit_job, wait_http)

pytestmark = pytest.mark.e2e
ROLE = "resmm.io/role"


def node_ports() -> list[str]:
    """Every port a raylet opens, chosen free, so that nodes on one machine never collide."""
    flags = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    return [f"{flag}={free_port()}" for flag in flags]


def state(dashboard: str, *args: str, timeout_s: float = 120) -> list[dict]:
    """`ray list ... --format json`, asked again (within timeout_s) while the state API is not answering."""
    deadline = time.time() + timeout_s
    while True:
        try:
            out = subprocess.run([str(BIN / "ray"), "list", *args, "--address", dashboard, "--format", "json",
                                  "--limit", "10000"], env=service_env(), capture_output=True, text=True,
                                 timeout=120, check=True)
            return json.loads(out.stdout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, json.JSONDecodeError):
            if time.time() > deadline:
                raise
            time.sleep(2)


class LabelledCluster:
    """A head (0 CPUs) and labelled 2-CPU worker nodes, each `ray start --block` in a session of its own, so that a
    node's raylet and every worker it started can be SIGKILLed together, and nothing else on the machine."""

    def __init__(self, logs: Path):
        self.logs, self.nodes, self.temp_dirs, self.started = logs, {}, [], 0
        self.dashboard = ""

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        temp_dir = tempfile.mkdtemp(prefix=f"rs-{name[0]}-", dir="/tmp")  # short: socket paths are limited
        self.temp_dirs.append(temp_dir)
        self.started += 1
        log = open(self.logs / f"{name}-{self.started}.log", "w")
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--block", "--disable-usage-stats",
                                 f"--temp-dir={temp_dir}", *node_ports(), *args], env=service_env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes[name] = proc
        return proc

    def start_head(self) -> None:
        self.gcs_port, dashboard_port = free_port(), free_port()
        self.dashboard = f"http://127.0.0.1:{dashboard_port}"
        head = self._start("head", ["--head", f"--port={self.gcs_port}", "--num-cpus=0", "--include-dashboard=true",
                                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                                    f"--ray-client-server-port={free_port()}"])
        wait_http(f"{self.dashboard}/api/version", ok_codes=(200, 401), proc=head, timeout_s=180)

    def add_node(self, role: str) -> str:
        """Start a node labelled `role` and wait (bounded) until it registers; returns its node id."""
        before = set(alive_nodes(self.dashboard).get(role, []))
        ports = 21000 + 400 * (self.started % 8)  # below the ephemeral range that free_port() draws from
        self._start(role, [f"--address=127.0.0.1:{self.gcs_port}", "--num-cpus=2", f"--labels={ROLE}={role}",
                           f"--min-worker-port={ports}", f"--max-worker-port={ports + 399}"])
        deadline = time.time() + 180
        while True:
            new = set(alive_nodes(self.dashboard).get(role, [])) - before
            if new:
                return new.pop()
            assert self.nodes[role].poll() is None, f"the {role} node exited"
            assert time.time() < deadline, f"the {role} node never registered"
            time.sleep(2)

    def kill(self, name: str) -> None:
        """SIGKILL a node: its `ray start`, raylet, agents and every worker it started (one session)."""
        proc = self.nodes.pop(name)
        for pid in session_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(30)

    @contextlib.contextmanager
    def cpu_seconds(self):
        """Yields a dict filled, when the body ends, with each node's CPU seconds over the body: every process of
        the node's session sampled every 0.2 s (utime + stime), so workers that exit in between count too."""
        seen: dict[tuple[str, int], tuple[float, float]] = {}  # (node, pid) -> (first, last) sample
        done, result = threading.Event(), {}

        def sample():
            for name, proc in list(self.nodes.items()):
                for pid, seconds in process_cpu_seconds(proc.pid).items():
                    first, _ = seen.get((name, pid), (seconds, seconds))
                    seen[(name, pid)] = (first, seconds)

        sample()
        baseline = set(seen)
        def keep_sampling():
            while not done.wait(0.2):
                sample()

        thread = threading.Thread(target=keep_sampling, daemon=True)
        thread.start()
        try:
            yield result
        finally:
            done.set()
            thread.join(10)
            sample()
            for (name, pid), (first, last) in seen.items():
                result[name] = round(result.get(name, 0.0) + last - (first if (name, pid) in baseline else 0.0), 1)

    def kill_all(self) -> None:
        """Head loss: every node SIGKILLed, the head (GCS, dashboard, job drivers) with them."""
        for name in list(self.nodes):
            self.kill(name)

    def stop(self) -> None:
        for name in list(self.nodes)[::-1]:
            stop(self.nodes.pop(name))
        for temp_dir in self.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)


def session_pids(session: int) -> list[int]:
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            with contextlib.suppress(OSError, ProcessLookupError):
                if os.getsid(int(proc_dir.name)) == session:
                    pids.append(int(proc_dir.name))
    return pids


def process_cpu_seconds(session: int) -> dict[int, float]:
    """{pid: CPU seconds (user + system) so far} of the session's live processes."""
    ticks, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in session_pids(session):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def alive_nodes(dashboard: str) -> dict[str, list[str]]:
    """{role label: [node ids]} of the alive labelled nodes; empty while the state API is not answering yet (a
    loaded machine can take a while after the dashboard's first answer)."""
    try:
        nodes = state(dashboard, "nodes", "--detail", timeout_s=0)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return {}
    roles: dict[str, list[str]] = {}
    for node in nodes:
        if node["state"] == "ALIVE" and node["labels"].get(ROLE):
            roles.setdefault(node["labels"][ROLE], []).append(node["node_id"])
    return roles


def start_cluster(cluster: LabelledCluster) -> dict[str, str]:
    cluster.start_head()
    return {role: cluster.add_node(role) for role in ("data", "train")}  # one at a time, each registered first


@pytest.fixture(scope="module")
def labelled_cluster(tmp_path_factory):
    """Yields (the cluster, {role: node id}); stops only the nodes it started."""
    cluster = LabelledCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster, start_cluster(cluster)
    finally:
        cluster.stop()


def job_args(demo_slice, out: Path, experiment: str, extra=()) -> list[str]:
    return ["jobs/train.py", f"data.path={demo_slice}", "train.num_workers=2", "train.epochs=2",
            "train.batch_size_per_worker=16", f"data.label_selector={{{ROLE}: data}}",
            f"train.worker_label_selector={{{ROLE}: train}}", f"train.storage_path={out / 'runs'}",
            f"mlflow.experiment={experiment}", "mlflow.registered_model=resmm-multi-node", *extra,
            "--summary-json", str(out / "summary.json")]


@pytest.fixture(scope="module")
def undisturbed(labelled_cluster, mlflow_server, demo_slice, tmp_path_factory):
    """One job on the labelled cluster with nothing killed: (summary, its directory, CPU seconds per node)."""
    cluster, _ = labelled_cluster
    out = tmp_path_factory.mktemp("undisturbed")
    with cluster.cpu_seconds() as cpu:
        completed = submit_job(cluster.dashboard, job_args(demo_slice, out, "e2e-multi-node"),
                               env_vars={"MLFLOW_TRACKING_URI": mlflow_server})
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return json.loads((out / "summary.json").read_text()), out, cpu


def test_data_tasks_run_on_data_nodes_and_train_workers_on_train_nodes(labelled_cluster, undisturbed):
    cluster, roles = labelled_cluster
    summary, out, cpu = undisturbed
    assert summary["model_version"] and summary["epochs"] == 2

    # The checkpoints and the feature cache went through train.storage_path, which every node reads.
    assert list((out / "runs").glob("resmm-*/checkpoint_*"))
    assert summary["cache"]["location"] == str(out / "runs" / "feature-cache")

    tasks = state(cluster.dashboard, "tasks", "--detail")
    data_tasks = [t for t in tasks if t.get("type") == "NORMAL_TASK" and ("Read" in t["name"] or "Map" in t["name"])]
    by_node = {}
    for task in data_tasks:
        by_node.setdefault(task["node_id"], {}).setdefault(task["name"], 0)
        by_node[task["node_id"]][task["name"]] += 1
    rows_per_cpu_s = {name: round(summary["rows_seen_train"] / max(seconds, 1e-9), 1) for name, seconds in cpu.items()}
    print(json.dumps({"roles": roles, "data tasks per node": by_node, "CPU seconds per node": cpu,
                      "rows trained per CPU second of each node": rows_per_cpu_s}, indent=1))
    assert any(t["name"].startswith("ReadParquet") for t in data_tasks), by_node  # the reads and decodes
    assert set(by_node) == {roles["data"]}, by_node  # 0 Ray Data tasks on the train node or the head
    workers = [a for a in state(cluster.dashboard, "actors", "--detail") if a["class_name"] == "RayTrainWorker"]
    assert len(workers) == 2 and {a["node_id"] for a in workers} == {roles["train"]}, workers
    assert cpu["data"] > 1.0 and cpu["train"] > 1.0, cpu  # both nodes worked: decoding there, training here


def one_run_one_version(mlflow_server: str, experiment: str, summary: dict) -> object:
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.run_id for r in runs] == [summary["mlflow_run_id"]]
    assert len(client.search_model_versions(f"run_id = '{summary['mlflow_run_id']}'")) == 1
    return runs[0]


def submit_and_kill(cluster: LabelledCluster, args: list[str], env_vars: dict, victim: str, log_path: Path,
                    replace: bool = True) -> tuple[int, dict]:
    """Submit, SIGKILL the `victim` node just after a mid-epoch checkpoint of the last epoch, and start one like it
    (when `replace`); returns the job's exit code (bounded wait) and the interrupted checkpoint's metrics."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(job_submit_command(cluster.dashboard, args, env_vars), env=service_env(),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            interrupted = checkpoint_within_epoch(Path(args[args.index("--summary-json") + 1]).parent / "runs", proc,
                                                  after_epoch=0)
            cluster.kill(victim)
            if replace:
                cluster.add_node(victim)
            return proc.wait(900), interrupted
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_train_node_lost_mid_epoch_is_replaced_and_the_epoch_resumes(labelled_cluster, undisturbed, mlflow_server,
                                                                        demo_slice, tmp_path):
    cluster, _ = labelled_cluster
    args = job_args(demo_slice, tmp_path, "e2e-train-node-lost", ["train.checkpoint_every_steps=8"])
    env_vars = {"MLFLOW_TRACKING_URI": mlflow_server, "RESMM_FED_ROWS_DIR": str(tmp_path / "fed")}
    code, interrupted = submit_and_kill(cluster, args, env_vars, "train", tmp_path / "job.log")
    assert code == 0, (tmp_path / "job.log").read_text()[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["restarts"] == 1
    resumed = summary["resumed_within_epoch"]  # from the checkpoint seen, or one registered just after it
    assert resumed["epoch"] == interrupted["epoch"] + 1 and resumed["trained_rows"] >= interrupted["trained_rows"] > 0
    assert_each_row_fed_once_per_epoch(tmp_path / "fed", summary)  # 0 rows trained twice in the resumed epoch
    run = one_run_one_version(mlflow_server, "e2e-train-node-lost", summary)
    assert run.info.status == "FINISHED" and run.data.metrics["train/restarts"] == 1
    score, reference = summary["metrics"]["val_balanced_accuracy"], undisturbed[0]["metrics"]["val_balanced_accuracy"]
    assert abs(score - reference) <= 0.1, (score, reference)  # within the noise of two epochs on 1,500 rows


def test_a_data_node_lost_mid_epoch_is_replaced_and_the_feed_recovers(labelled_cluster, undisturbed, mlflow_server,
                                                                      demo_slice, tmp_path):
    cluster, _ = labelled_cluster
    args = job_args(demo_slice, tmp_path, "e2e-data-node-lost", ["train.checkpoint_every_steps=8"])
    env_vars = {"MLFLOW_TRACKING_URI": mlflow_server, "RESMM_FED_ROWS_DIR": str(tmp_path / "fed")}
    code, _ = submit_and_kill(cluster, args, env_vars, "data", tmp_path / "job.log")
    assert code == 0, (tmp_path / "job.log").read_text()[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert_each_row_fed_once_per_epoch(tmp_path / "fed", summary)
    run = one_run_one_version(mlflow_server, "e2e-data-node-lost", summary)
    assert run.info.status == "FINISHED"
    score, reference = summary["metrics"]["val_balanced_accuracy"], undisturbed[0]["metrics"]["val_balanced_accuracy"]
    assert abs(score - reference) <= 0.1, (score, reference)


def test_a_lost_cluster_resumes_on_a_fresh_one_with_the_identical_command(labelled_cluster, mlflow_server, demo_slice,
                                                                          tmp_path):
    """KubeRay's RayJob retry (backoffLimit) after a lost head: the head, both nodes and the driver are SIGKILLed
    mid-epoch, a fresh cluster comes up, and the identical command is submitted again. No run name is given:
    it derives from config and data, so the retry finds the checkpoint, the feature cache and the MLflow run,
    which the lost driver left RUNNING and which is closed as KILLED once its heartbeat stops."""
    cluster, _ = labelled_cluster
    args = job_args(demo_slice, tmp_path, "e2e-cluster-lost", ["train.checkpoint_every_steps=8"])
    env_vars = {"MLFLOW_TRACKING_URI": mlflow_server, "RESMM_FED_ROWS_DIR": str(tmp_path / "fed"),
                "RESMM_HEARTBEAT_SECONDS": "2"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(job_submit_command(cluster.dashboard, args, env_vars), env=service_env(),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            interrupted = checkpoint_within_epoch(tmp_path / "runs", proc, after_epoch=0)
            cluster.kill_all()
            proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
    client = MlflowClient(mlflow_server)
    [orphan] = client.search_runs([client.get_experiment_by_name("e2e-cluster-lost").experiment_id])
    assert orphan.info.status == "RUNNING"  # nobody ended it
    start_cluster(cluster)
    time.sleep(7)  # three missed beats of 2 s

    completed = submit_job(cluster.dashboard, args, env_vars)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    resumed = summary["resumed_within_epoch"]
    assert resumed["epoch"] == interrupted["epoch"] + 1 and resumed["trained_rows"] >= interrupted["trained_rows"] > 0
    assert summary["cache"]["decoded_rows"] == 0, summary["cache"]  # 0 rows decoded again
    assert_each_row_fed_once_per_epoch(tmp_path / "fed", summary)
    run = one_run_one_version(mlflow_server, "e2e-cluster-lost", summary)
    assert run.info.run_id == orphan.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["resmm.end_reason"].startswith("driver lost: no heartbeat since")
