"""Render PNG screenshots of an MLflow run's UI pages with headless Chromium and print a text summary of its metrics."""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow import MlflowClient

# Without the background-networking flags Chromium's own connections are refused by a closed network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--remote-debugging-pipe"]
# A fresh profile starts in the GenAI layout with the assistant panel auto-opened: show the model-training layout.
INIT_JS = ("localStorage.setItem('mlflow.workflowType_v1', '\"machine_learning\"');"
           "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');")
# [readyState, spinners in view, text length]: off-screen charts keep a spinner until scrolled to.
READY_JS = """[document.readyState, [...document.querySelectorAll('[class*="-spin-spinning"], [role="progressbar"]')]
  .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.bottom > 0 && r.right > 0
                 && r.top < innerHeight && r.left < innerWidth; }).length, document.body?.innerText.length ?? 0]"""


class Chromium:
    """Headless Chromium driven by the DevTools protocol over --remote-debugging-pipe, so no extra dependency."""

    def __init__(self, binary: str, profile: str):
        (cmd_r, self.w), (self.r, res_w), self.buf, self.n = os.pipe(), os.pipe(), b"", 0

        def move_fds():  # Chromium reads commands from fd 3 and writes replies to fd 4
            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3), os.dup2(b, 4)
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"], pass_fds=(3, 4),
                                     preexec_fn=move_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r), os.close(res_w)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.n += 1
        os.write(self.w, json.dumps({"id": self.n, "method": method, "params": params or {},
                                     **({"sessionId": session} if session else {})}).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self.buf:
                if not select.select([self.r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    raise TimeoutError(f"chromium did not answer {method} within {timeout:.0f}s")
                if not (chunk := os.read(self.r, 1 << 20)):
                    raise RuntimeError(f"chromium exited (rc={self.proc.poll()}) during {method}")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            if (reply := json.loads(raw)).get("id") == self.n:  # events and other replies are skipped
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def screenshot(self, url: str, out: Path, width: int, height: int, wait_s: float) -> bool:
        """Load url, wait until no spinner is in view and the page is unchanged for 2 s, save a PNG; False if not."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        tab = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, tab)
        self.send("Page.enable", {}, tab)  # without it the init script does not run
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": INIT_JS}, tab)
        self.send("Page.navigate", {"url": url}, tab)
        deadline, last, stable = time.monotonic() + wait_s, None, 0
        while time.monotonic() < deadline and stable < 4:
            time.sleep(0.5)
            state = self.send("Runtime.evaluate", {"expression": READY_JS, "returnByValue": True}, tab)["result"]
            state = state.get("value")
            ready = bool(state) and state[0] == "complete" and state[1] == 0 and state[2] > 100
            stable, last = (stable + 1 if ready and state == last else 0), state
        out.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, tab)["data"]))
        self.send("Target.closeTarget", {"targetId": target})
        return stable >= 4

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10), self.proc.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            self.proc.kill(), self.proc.wait()
        os.close(self.w), os.close(self.r)


def start_server(tracking_uri: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--backend-store-uri", tracking_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log_path, "w") as log:  # its own process group, so that stopping it touches nothing else
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_health(url: str, proc: subprocess.Popen | None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"error: mlflow server exited with code {proc.returncode} before {url}/health answered")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    sys.exit(f"error: {url}/health did not answer within {timeout}s")


def copy_run_plots(client: MlflowClient, run_id: str, out: Path) -> None:
    """The run's own plots (confusion matrix, robustness), as MLflow stores them, beside the screenshots."""
    with tempfile.TemporaryDirectory() as scratch:
        for plot in client.list_artifacts(run_id, "plots"):
            if plot.path.endswith(".png"):
                shutil.copyfile(client.download_artifacts(run_id, plot.path, scratch), out / Path(plot.path).name)
                print(f"  {out / Path(plot.path).name}  <- artifact {plot.path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tracking-uri", help="backend store, e.g. sqlite:////work/main/mlflow.db (a server is started)")
    src.add_argument("--server-url", help="an already running MLflow server, e.g. http://127.0.0.1:5000")
    p.add_argument("--run-id", help="default: the latest run of --experiment")
    p.add_argument("--experiment", default="resmm")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "mlflow-ui")
    p.add_argument("--wait-s", type=float, default=60, help="most seconds to wait for one page to finish rendering")
    p.add_argument("--window-size", default="1600,1400", help="WIDTH,HEIGHT")
    p.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium"))
    args = p.parse_args()
    if not args.chromium or not shutil.which(args.chromium):
        sys.exit("error: chromium not found: apt-get install -y chromium, or pass --chromium PATH")
    args.out.mkdir(parents=True, exist_ok=True)
    proc, unsettled = None, 0
    try:
        if args.tracking_uri:
            proc, url = start_server(args.tracking_uri, Path(tempfile.mkdtemp()) / "mlflow-server.log")
        else:
            url = args.server_url.rstrip("/")
        wait_health(url, proc)
        client = MlflowClient(tracking_uri=url)  # all look-ups go through the server's REST API
        if not args.run_id:
            exp = client.get_experiment_by_name(args.experiment)
            runs = exp and client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"],
                                              max_results=1)
            if not runs:
                sys.exit(f"error: no run in experiment {args.experiment!r}")
            args.run_id = runs[0].info.run_id
        run, groups = client.get_run(args.run_id), {}
        for key in sorted(run.data.metrics):
            groups.setdefault(key.split("/", 1)[0] if "/" in key else "(no prefix)", []).append(key)
        print(f"run: {run.info.run_name} ({run.info.run_id}, {run.info.status})\nmetrics: {len(run.data.metrics)}")
        for prefix, keys in sorted(groups.items()):
            print(f"  {prefix} [{len(keys)}]: {', '.join(keys)}")

        copy_run_plots(client, args.run_id, args.out)
        run_url = f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        pages = [("run-overview", run_url), ("run-model-metrics", f"{run_url}/model-metrics")]
        pages += [("run-system-metrics", f"{run_url}/system-metrics")] if "system" in groups else []
        print(f"system metrics: {len(groups.get('system', []))} ('system/' keys; page skipped when 0)")
        models = sorted({v.name for v in client.search_model_versions(f"run_id='{run.info.run_id}'")})
        print(f"registered models of this run: {', '.join(models) or 'none'}")
        pages += [(f"model-{m}", f"{url}/#/models/{urllib.parse.quote(m, safe='')}") for m in models]
        width, height = (int(v) for v in args.window_size.split(","))
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            browser = Chromium(args.chromium, profile)
            try:
                for name, page_url in pages:
                    png = args.out / ("".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".png")
                    done = browser.screenshot(page_url, png, width, height, args.wait_s)
                    unsettled += not done
                    print(f"  {png}{'' if done else '  WARNING: still loading after --wait-s'}  <- {page_url}")
            finally:
                browser.close()
    finally:
        if proc is not None:  # stop only the server started above: its own process group
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL), proc.wait()
    sys.exit(1 if unsettled else 0)


if __name__ == "__main__":
    main()
