"""The local Ray instance's runtime_env: the driver's code shipped only where workers would import other code."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.runtime import local_code_env

REPO = Path(__file__).resolve().parents[2]


def test_nothing_is_shipped_when_workers_import_the_drivers_own_files():
    assert local_code_env() == {}  # this checkout is the installed (editable) package


def test_a_checkout_beside_another_install_is_shipped(tmp_path):
    for package in ("resmm", "pipelines"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    probe = subprocess.run(
        [sys.executable, "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
         "from pipelines.runtime import local_code_env; print(json.dumps(local_code_env()))", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert json.loads(probe.stdout.splitlines()[-1]) == {
        "py_modules": [str((tmp_path / "resmm").resolve()), str((tmp_path / "pipelines").resolve())]}
