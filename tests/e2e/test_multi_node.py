"""Three real Ray nodes on one machine, labelled as the manifests label them (infra/raycluster.yaml): a head with
no CPUs, a `data` node and a `train` node, token auth on. A training job through `ray job submit` must run
every Ray Data task on the data node and every Train worker on the train node (Ray's state API says where)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.e2e.conftest import BIN, free_port, service_env, stop, submit_job, wait_http

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


def alive_roles(dashboard: str) -> dict[str, str]:
    """{role label: node id} of the alive labelled nodes; empty while the state API is not answering yet (a
    loaded machine can take a while after the dashboard's first answer)."""
    try:
        nodes = state(dashboard, "nodes", "--detail", timeout_s=0)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return {}
    return {n["labels"].get(ROLE): n["node_id"] for n in nodes if n["state"] == "ALIVE" and n["labels"].get(ROLE)}


@pytest.fixture(scope="module")
def labelled_cluster(tmp_path_factory):
    """Yields (dashboard URL, {role: node id}); stops only the three nodes it started."""
    logs = tmp_path_factory.mktemp("cluster")
    gcs_port, dashboard_port = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    temp_dirs, procs = [], []

    def start(name: str, args: list[str]):
        temp_dir = tempfile.mkdtemp(prefix=f"rs-{name[0]}-", dir="/tmp")  # short: socket paths are limited
        temp_dirs.append(temp_dir)
        log = open(logs / f"{name}.log", "w")
        procs.append(subprocess.Popen([str(BIN / "ray"), "start", "--block", "--disable-usage-stats",
                                       f"--temp-dir={temp_dir}", *node_ports(), *args], env=service_env(),
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        return procs[-1]

    try:
        head = start("head", ["--head", f"--port={gcs_port}", "--num-cpus=0", "--include-dashboard=true",
                              "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                              f"--ray-client-server-port={free_port()}"])
        wait_http(f"{dashboard}/api/version", ok_codes=(200, 401), proc=head, timeout_s=180)
        roles = {}
        for index, role in enumerate(("data", "train")):
            start(role, [f"--address=127.0.0.1:{gcs_port}", "--num-cpus=2", f"--labels={ROLE}={role}",
                         f"--min-worker-port={31000 + 400 * index}", f"--max-worker-port={31399 + 400 * index}"])
            deadline = time.time() + 180
            while role not in roles:  # one node at a time, each registered before the next starts
                assert time.time() < deadline, f"the {role} node never registered"
                time.sleep(2)
                roles = alive_roles(dashboard) or roles
        yield dashboard, roles
    finally:
        for proc in reversed(procs):
            stop(proc)
        for temp_dir in temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)


def test_data_tasks_run_on_data_nodes_and_train_workers_on_train_nodes(labelled_cluster, mlflow_server, demo_slice,
                                                                       tmp_path):
    dashboard, roles = labelled_cluster
    summary_path = tmp_path / "summary.json"
    completed = submit_job(dashboard, [
        "jobs/train.py", f"data.path={demo_slice}", "train.num_workers=2", "train.epochs=2",
        "train.batch_size_per_worker=16", f"data.label_selector={{{ROLE}: data}}",
        f"train.worker_label_selector={{{ROLE}: train}}", f"train.storage_path={tmp_path / 'runs'}",
        "mlflow.experiment=e2e-multi-node", "mlflow.registered_model=resmm-multi-node",
        "--summary-json", str(summary_path)], env_vars={"MLFLOW_TRACKING_URI": mlflow_server})
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    summary = json.loads(summary_path.read_text())
    assert summary["model_version"] and summary["epochs"] == 2

    # The checkpoints and the feature cache went through train.storage_path, which every node reads.
    assert list((tmp_path / "runs").glob("resmm-*/checkpoint_*"))
    assert summary["cache"]["location"] == str(tmp_path / "runs" / "feature-cache")

    tasks = state(dashboard, "tasks", "--detail")
    data_tasks = [t for t in tasks if t.get("type") == "NORMAL_TASK" and ("Read" in t["name"] or "Map" in t["name"])]
    by_node = {}
    for task in data_tasks:
        by_node.setdefault(task["node_id"], {}).setdefault(task["name"], 0)
        by_node[task["node_id"]][task["name"]] += 1
    print(json.dumps({"roles": roles, "data tasks per node": by_node}, indent=1))
    assert any(t["name"].startswith("ReadParquet") for t in data_tasks), by_node  # the reads and decodes
    assert set(by_node) == {roles["data"]}, by_node  # 0 Ray Data tasks on the train node or the head
    workers = [a for a in state(dashboard, "actors", "--detail") if a["class_name"] == "RayTrainWorker"]
    assert len(workers) == 2 and {a["node_id"] for a in workers} == {roles["train"]}, workers
