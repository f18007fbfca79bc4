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


def local_env_of(copies: Path, cwd: Path) -> dict:
    """local_code_env() of a process that imports the copies in `copies`, run from `cwd`."""
    probe = subprocess.run(
        [sys.executable, "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
         "from pipelines.runtime import local_code_env; print(json.dumps(local_code_env()))", str(copies)],
        capture_output=True, text=True, timeout=120, cwd=cwd)
    assert probe.returncode == 0, probe.stderr[-2000:]
    return json.loads(probe.stdout.splitlines()[-1])


def test_a_checkout_beside_another_install_is_shipped(tmp_path):
    copies, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    elsewhere.mkdir()
    for package in ("resmm", "pipelines"):
        shutil.copytree(REPO / package, copies / package, ignore=shutil.ignore_patterns("__pycache__"))
    # Run from elsewhere, workers would import the installed package: the driver's copies are shipped.
    assert local_env_of(copies, elsewhere) == {
        "py_modules": [str((copies / "resmm").resolve()), str((copies / "pipelines").resolve())]}
    # Run from the checkout itself, Ray puts it in front of the workers' sys.path: nothing to ship.
    assert local_env_of(copies, copies) == {}
