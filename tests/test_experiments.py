"""The experiment scripts end to end at ``--preset tiny`` (a local Ray instance, real PTB / vendored
WikiText-2 slices), their refusal of ``paper`` without a GPU (with an estimate, before Ray starts,
nothing written), and ``lsh-tune search``'s own refusal."""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"ptb_stacked_lstm.py": "ptb_stacked_lstm", "ptb_rhn.py": "ptb_rhn", "wt2_awd_lstm_mos.py": "wt2_awd_lstm_mos"}
WT2_SHA256 = {"train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
              "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
              "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"}


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_DEDUP_LOGS="0", OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    return env


def _script(name: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "experiments" / name), *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout, cwd=str(REPO))


def test_wikitext2_is_vendored_byte_for_byte():
    for split, digest in WT2_SHA256.items():
        with lzma.open(REPO / "lsh_tune" / "data" / "wikitext-2" / f"{split}.txt.xz", "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, split


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_paper_without_a_gpu_is_refused_with_an_estimate(script, tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.device_count():
        pytest.skip("this machine has a GPU: paper is not refused")
    r = _script(script, "--storage-path", str(tmp_path / "runs"), timeout=300)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("lsh-tune: error: preset='paper' with gpus_per_trial=0")
    assert "days" in err and "--preset small" in err and "FLOP counts" in err and "measured" in err
    assert not (tmp_path / "runs").exists() and "Ray" not in r.stdout


def test_lsh_tune_search_refuses_paper_on_cpu_with_an_estimate(tmp_path):
    from helpers import run_cli

    r = run_cli("search", "--model", "rhn", "--preset", "paper", "--gpus-per-trial", "0", "--storage-path",
                str(tmp_path / "runs"), timeout=300)
    assert r.returncode == 2 and "on CPU this search would take about" in r.stderr and "--preset small" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_estimates_refuse_paper_on_cpu_only_and_docs_show_the_estimators_table():
    from dataclasses import replace

    from lsh_tune.errors import LSHUsageError
    from lsh_tune.search.config import SearchConfig
    from lsh_tune.search.run.cost import estimate_search, time_table
    from lsh_tune.search.run.preflight import check_compute

    paper = SearchConfig(model="stacked_lstm", preset="paper", pool=24, rounds_every=3, gpus_per_trial=0)
    with pytest.raises(LSHUsageError, match="the dense reference alone .* days"):
        check_compute(paper)
    check_compute(replace(paper, gpus_per_trial=1.0))
    check_compute(replace(paper, preset="tiny"))
    cpu, gpu = estimate_search(paper, "cpu", slots=2), estimate_search(paper, "gpu", slots=2)
    assert gpu.total_s < cpu.total_s and cpu.reference_s < cpu.total_s and cpu.candidate_epochs > 100
    ckpt = estimate_search(replace(paper, reference_checkpoint="/x/dense.pt"), "cpu", slots=2)
    assert ckpt.reference_s == ckpt.ls_s and ckpt.total_s < cpu.total_s  # --reference-checkpoint skips the wait
    assert estimate_search(paper, "cpu", slots=4).total_s < cpu.total_s
    assert time_table() in (REPO / "docs" / "cluster.md").read_text()  # the docs show what the code estimates


def test_the_presets_schedules_have_one_source_and_the_small_hint_estimates_the_small_schedule():
    from dataclasses import replace

    from lsh_tune.cli.experiment import SCHEDULES
    from lsh_tune.errors import LSHUsageError
    from lsh_tune.search.config import SearchConfig
    from lsh_tune.search.run.cost import PRESET_SCHEDULES, cpu_slots, estimate_search, format_duration
    from lsh_tune.search.run.preflight import check_compute

    assert SCHEDULES["tiny"][:4] == ["--pool", "3", "--rounds-every", "1"] and set(SCHEDULES) == set(PRESET_SCHEDULES)
    paper = SearchConfig(model="rhn", preset="paper", gpus_per_trial=0, **PRESET_SCHEDULES["paper"])
    small = replace(paper, preset="small", **PRESET_SCHEDULES["small"])
    with pytest.raises(LSHUsageError) as e:
        check_compute(paper)
    expected = format_duration(estimate_search(small, "cpu", slots=cpu_slots(small)).total_s)
    assert f"--preset small (about {expected} on CPU)" in str(e.value)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - {"ptb_stacked_lstm.py", "ptb_rhn.py"}))
def test_each_script_runs_end_to_end_at_tiny(script, tmp_path):
    """ptb_stacked_lstm.py runs end to end (killed once, on S3) in tests/test_search_s3.py, ptb_rhn.py as a
    Ray job on the fake cluster in tests/test_fake_cluster.py."""
    pytest.importorskip("ray")
    store = tmp_path / "runs"
    extra = ["--max-tokens", "1000"] if script.startswith("wt2") else []  # 33k-word softmax: the slowest
    r = _script(script, "--preset", "tiny", "--storage-path", str(store), "--num-cpus", "2", "--ray-temp-dir",
                str(Path("/tmp") / f"lshx{os.getpid()}"), "--verbose", "0", *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    exp = store / SCRIPTS[script]
    assert "starting a local Ray instance" in r.stdout
    assert f"results: {exp}" in r.stdout and f"tensorboard --logdir {exp}/tensorboard" in r.stdout
    best = json.loads((exp / "best.json").read_text())
    assert best["best"] is not None and (exp / "best_model.pt").is_file()
    saved = json.loads((exp / "lsh" / "search.json").read_text())
    assert saved["preset"] == "tiny" and saved["pool"] == 3 and saved["gpus_per_trial"] == 0
