"""Labelled Ray nodes on one machine, each `ray start --block` in a session of its own, so that a node (its raylet
and every worker it started) can be SIGKILLed and its CPU time measured apart: the multi-node e2e tests and
benchmarks/data_nodes.py use it."""
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

from tests.e2e.conftest import BIN, free_port, service_env, stop, wait_http

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

    def add_node(self, role: str, cpus: int = 2, name: str | None = None) -> str:
        """Start a node labelled `role` (named `name`, default the role) and wait (bounded) until it registers;
        returns its node id."""
        before = set(alive_nodes(self.dashboard).get(role, []))
        ports = 21000 + 400 * (self.started % 8)  # below the ephemeral range that free_port() draws from
        self._start(name or role, [f"--address=127.0.0.1:{self.gcs_port}", f"--num-cpus={cpus}",
                                   f"--labels={ROLE}={role}", f"--min-worker-port={ports}",
                                   f"--max-worker-port={ports + 399}"])
        deadline = time.time() + 180
        while True:
            new = set(alive_nodes(self.dashboard).get(role, [])) - before
            if new:
                return new.pop()
            assert self.nodes[name or role].poll() is None, f"the {name or role} node exited"
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
    def cpu_timeline(self):
        """Yields a CpuTimeline of every node's processes, sampled every 0.2 s while the body runs."""
        timeline = CpuTimeline()
        done = threading.Event()

        def sample():
            timeline.sample({name: process_cpu_seconds(proc.pid) for name, proc in list(self.nodes.items())})

        def keep_sampling():
            while not done.wait(0.2):
                sample()

        sample()
        thread = threading.Thread(target=keep_sampling, daemon=True)
        thread.start()
        try:
            yield timeline
        finally:
            done.set()
            thread.join(10)
            sample()

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


class CpuTimeline:
    """Each node's CPU seconds (user + system, every process of its session) over time. A process that exits
    keeps its last sample, so short-lived workers count too."""

    def __init__(self):
        self.last: dict[tuple[str, int], float] = {}
        self.points: list[tuple[float, dict[str, float]]] = []  # (time.time(), {node: cumulative CPU seconds})

    def sample(self, nodes: dict[str, dict[int, float]]) -> None:
        for name, processes in nodes.items():
            for pid, seconds in processes.items():
                self.last[(name, pid)] = seconds
        totals: dict[str, float] = {}
        for (name, _), seconds in self.last.items():
            totals[name] = totals.get(name, 0.0) + seconds
        self.points.append((time.time(), totals))

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per node from the last sample at or before `start` to the first at or after `end`."""
        before = max((p for p in self.points if p[0] <= start), default=self.points[0], key=lambda p: p[0])[1]
        after = min((p for p in self.points if p[0] >= end), default=self.points[-1], key=lambda p: p[0])[1]
        return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}

    def total(self) -> dict[str, float]:
        return self.between(self.points[0][0], self.points[-1][0])


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


