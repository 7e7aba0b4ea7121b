"""``benchmarks/gpu_check.py`` (run on a lent GPU machine) works: a CPU dry run at the tiny preset.

The GPU itself is never a test dependency; this only keeps the prepared script from rotting, so
that the few minutes of a lent GPU are not lost to a broken script.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def _dry_run(script: str, *args: str) -> list[dict]:
    """The JSON lines ``benchmarks/<script>`` prints with ``--device cpu --preset tiny --batches 3 *args``."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--device", "cpu", "--preset", "tiny",
                          "--batches", "3", *args], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    return [json.loads(x) for x in run.stdout.splitlines()]


def test_gpu_check_dry_run_on_cpu():
    lines = _dry_run("gpu_check.py", "--top", "8")
    steps = [x.get("step") for x in lines[:-1]]
    assert steps == ["train_reference", "train_candidate", "ls_cuda_float32", "ls_cpu_vs_cuda_float64"]
    summary = lines[-1]
    assert summary["ok"] and summary["summary"]["ls_cpu_vs_cuda_max_abs_diff"] == 0.0   # same device here
    n_full = summary["summary"]["full_epoch_batches"]
    assert 2000 < n_full < 3000                                   # all of PTB's 929,589 training tokens
    for x in lines[:2]:                                           # a few batches scaled to a full epoch
        assert abs(x["full_epoch_s"] - x["s_per_batch"] * n_full) < 1e-6 * x["full_epoch_s"]


def test_gpu_packing_dry_run_on_cpu():
    """The packing benchmark's processes start together, each trains its batches, and the summary's
    throughput is n × batches over the slowest process's seconds."""
    lines = _dry_run("gpu_packing.py", "--trials", "1,2")
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert [r["trials"] for r in rows] == [1, 2] and rows[0]["speedup"] == 1.0
    for r in rows:
        assert r["batches_per_s"] == r["trials"] * r["batches_each"] / r["slowest_s"]
    assert rows[1]["speedup"] == rows[1]["batches_per_s"] / rows[0]["batches_per_s"]
    assert summary["best_trials_per_gpu"] == max(rows, key=lambda r: r["batches_per_s"])["trials"]


@pytest.mark.usefixtures("one_torch_thread")
def test_step_benchmark_dry_run_on_cpu_and_its_refusals(capsys):
    """``benchmarks/bench_train_step.py`` (the GPU check's step timing) on CPU, tiny RHN: one line per
    variant and a summary whose ratios are the medians' ratio; bad variants exit with a message."""
    bench = load_benchmark("bench_train_step")
    assert bench.main(["--model", "rhn", "--preset", "tiny", "--variants", "eager,unfused", "--batches", "2",
                       "--repeat", "2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    rows, summary = lines[:2], lines[2]["summary"]
    assert [r["variant"] for r in rows] == ["eager", "unfused"]
    assert summary["unfused_over_eager"] == pytest.approx(rows[1]["s_per_batch_median"] / rows[0]["s_per_batch_median"])
    for argv, msg in ((["--variants", "eager,fast"], "--variants fast not allowed"),
                      (["--model", "stacked_lstm", "--variants", "unfused"], "applies to --model rhn only"),
                      (["--model", "stacked_lstm", "--variants", "eager,compiled"], "--variants compiled applies")):
        with pytest.raises(SystemExit) as e:
            bench.main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_the_whole_gpu_check_keeps_to_its_budget_on_a_cpu_dry_run(tmp_path):
    """``benchmarks/gpu_check.sh`` with ``DEVICE=cpu PRESET=tiny`` and a 40 s budget: every step is
    either started under a limit no longer than the time left or skipped once the budget is spent,
    in the order of importance; the first step (the RHN step timing) runs to its summary; the script
    ends with its ``done`` line, exit 0, within the budget plus the last step's overrun allowance.
    With ``OUT`` set (the device tool's returned folder) the whole output is also in ``$OUT/gpu_check.log``."""
    import time

    steps = ["rhn_step", "stacked_lstm", "ls_fast", "graph_tests", "search_split", "packing_lstm", "stacked_step",
             "rhn", "awd_lstm_mos", "packing_rhn"]
    t0 = time.monotonic()
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=200, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "DEVICE": "cpu",
                                           "PRESET": "tiny", "BUDGET_S": "40", "PYTHON": sys.executable,
                                           "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")})
    took = time.monotonic() - t0
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
    marks = [x for x in lines if x.get("step") in steps and ("limit_s" in x or "skipped" in x) and "exit" not in x]
    assert [x["step"] for x in marks] == steps
    skipped = ["skipped" in x for x in marks]
    assert skipped == sorted(skipped)                     # once the budget is spent, every later step is skipped
    assert not skipped[0] and any(skipped)                # 40 s cannot hold all ten steps
    assert all(x["limit_s"] <= 40 for x in marks if "limit_s" in x)
    assert any("summary" in x and x["summary"].get("model") == "rhn" for x in lines)
    assert lines[-1]["step"] == "done" and lines[-1]["budget_s"] == 40
    assert took < 40 + 30                                 # a step never outlives the time left (+ process start-up)
    assert [x for x in (tmp_path / "out" / "gpu_check.log").read_text().splitlines() if x.startswith("{")] == \
        [x for x in run.stdout.splitlines() if x.startswith("{")]
