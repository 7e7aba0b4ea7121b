"""``lsh-tune search`` argument handling (no Ray started: every case fails before ray.init)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "lsh_tune.cli.search", *args], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--hpo", "smac"], "hpo='smac' is not allowed; choose one of: grid, random, tpe, atpe, bohb, hyperband"),
    (["--metric", "acc"], "metric='acc' is not allowed"),
    (["--pool", "8", "--rounds-every", "1", "--max-epochs", "3"], "use max_epochs >= 4"),
    (["--hpo", "grid", "--pool", "30", "--max-epochs", "20"], "pool=30 exceeds the grid's 24 variants"),
    (["--sparsity", "1.2"], "sparsity=1.2 is out of range"),
    (["--gpus-per-trial", "0", "--cpus-per-trial", "0"], "a trial needs some resource"),
])
def test_bad_values_are_one_line_errors_with_exit_2(args, message):
    r = _run(*args)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_resume_without_a_search_fails_before_starting_ray(tmp_path):
    r = _run("--storage-path", str(tmp_path), "--name", "nothing", "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_experiment_scripts_pass_overrides_through(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "experiments" / "ptb_stacked_lstm.py"), "--hpo", "nope"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                       timeout=120)
    assert r.returncode == 2 and "hpo='nope'" in r.stderr
