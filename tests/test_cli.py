"""The `resmm` command: one subcommand per job, each job's own --help, one line and exit code 2 for a user
mistake; `python jobs/<job>.py` still works for `ray job submit`."""
import subprocess
import sys

from tests.conftest import REPO, RESMM


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def test_resmm_lists_every_job():
    out = run(RESMM, "--help")
    assert out.returncode == 0, out.stderr
    for command in ("train", "predict", "retrain", "compare", "cache", "demo-data", "models"):
        assert f"  {command} " in out.stdout, out.stdout


def test_each_subcommand_shows_its_own_options_and_examples():
    out = run(RESMM, "train", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: resmm train") and "--summary-json" in out.stdout
    assert "Examples:" in out.stdout and "ray job submit" in out.stdout
    predict = run(RESMM, "predict", "--help")
    assert predict.returncode == 0 and "--model-uri" in predict.stdout


def test_a_user_mistake_is_one_line_and_exit_code_2(tmp_path):
    missing = run(RESMM, "train", "--config", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and missing.stderr.startswith("resmm: "), missing.stderr
    wrong_key = run(RESMM, "cache", "data.no_such_key=1")
    assert wrong_key.returncode == 2 and wrong_key.stderr.startswith("resmm: "), wrong_key.stderr
    assert run(RESMM, "no-such-command").returncode == 2


def test_the_job_scripts_still_run_for_ray_job_submit(tmp_path):
    """`ray job submit --working-dir . -- python jobs/train.py`: the script form, from the checkout."""
    out = run(sys.executable, str(REPO / "jobs" / "train.py"), "--help", cwd=tmp_path)
    assert out.returncode == 0 and "usage: train.py" in out.stdout, out.stderr
    wrong = run(sys.executable, str(REPO / "jobs" / "cache.py"), "data.no_such_key=1", cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.startswith("resmm: "), wrong.stderr
