"""A search whose storage path is an S3 bucket (a real S3-compatible server on 127.0.0.1: moto's server mode),
SIGKILLed while the dense reference trains, then resumed: no reference or candidate epoch is trained twice
(from the logs in the bucket), the reference resumes where it stopped, round-0 candidates trained beside it,
and every output is in the bucket. The search is ``experiments/ptb_stacked_lstm.py --preset tiny`` (a longer
reference so the kill lands in it), so this is also that script's end-to-end run."""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray")

from lsh_tune.search.candidate import read_epoch_log  # noqa: E402
from lsh_tune.search.config import SearchConfig  # noqa: E402
from lsh_tune.search.run.reference import read_reference_log, reference_plan, search_corpus  # noqa: E402
from lsh_tune.storage import Storage  # noqa: E402
from helpers import kill_tree  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
REFERENCE_EPOCHS = 5
#: What the script's tiny preset runs (lsh_tune/cli/experiment.py, SCHEDULES), the reference made longer.
SEARCH = dict(model="stacked_lstm", preset="tiny", corpus="ptb", pool=3, rounds_every=1, final_k=2, max_epochs=2,
              reference_epochs=REFERENCE_EPOCHS, max_tokens=2000, gpus_per_trial=0.0, cpus_per_trial=1.0, seed=0,
              sparsity=0.67, hpo="tpe", metric="hybrid")


def _args(uri: str, temp: Path) -> list[str]:
    return [sys.executable, str(REPO / "experiments" / "ptb_stacked_lstm.py"), "--preset", "tiny",
            "--reference-epochs", str(REFERENCE_EPOCHS), "--storage-path", uri, "--num-cpus", "2",
            "--ray-temp-dir", str(temp), "--verbose", "0", "--json"]


def test_s3_search_killed_during_reference_training_resumes_with_outputs_in_the_bucket(s3, tmp_path):
    uri = s3.uri("runs")
    cfg = SearchConfig(storage_path=uri, name="ptb_stacked_lstm", **SEARCH)
    plan = reference_plan(cfg, search_corpus(cfg))
    assert plan.cache.startswith("s3://") and "endpoint_override" in plan.cache
    env = dict(os.environ, **s3.env(), TUNE_GLOBAL_CHECKPOINT_S="1", PYTHONPATH=str(REPO), RAY_DEDUP_LOGS="0")
    args = _args(uri, Path("/tmp") / f"lshs3{os.getpid()}")
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "first.err", "w"))
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None and len(read_reference_log(plan)) < 2:
            time.sleep(0.3)
        assert proc.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
    finally:
        kill_tree(proc)  # the driver and every process it started (Ray's GCS, raylet, workers)
    before = read_reference_log(plan)
    assert 2 <= len(before) < REFERENCE_EPOCHS, "the kill came after the reference finished"
    exp = Storage(uri).child("ptb_stacked_lstm")
    saved = SearchConfig.load(exp)
    assert {k: getattr(saved, k) for k in SEARCH} == SEARCH             # the script's tiny settings
    assert exp.read_json("lsh/state.json")["pool"]["rounds"] == []  # round 0 waited for the reference
    assert not plan.store().is_file(f"{plan.key}.npz")

    resumed = subprocess.run(args + ["--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert "starting a local Ray instance" in resumed.stdout
    assert f"results: {exp.uri_of()} · TensorBoard: tensorboard --logdir {exp.uri_of('tensorboard')}" in resumed.stdout

    # The reference: every epoch once, the resumed run starting right after the last one the killed run saved.
    log = read_reference_log(plan)
    assert [r["epoch"] for r in log] == list(range(1, REFERENCE_EPOCHS + 1))
    assert log[len(before) - 1] == before[-1] and {r["pid"] for r in log[len(before):]}.isdisjoint(
        {r["pid"] for r in before})
    ref = plan.store().read_bytes(f"{plan.key}.npz")
    assert ref and summary["reference"]["epochs"] == REFERENCE_EPOCHS and summary["reference"]["val_ppl"] > 1
    assert len(exp.read_json("lsh/reference_ls.json")) == REFERENCE_EPOCHS + 1  # epoch 0 .. last, ranked on

    # Candidates: each epoch once; the search finished with its outputs in the bucket, nothing on local disk.
    epochs = read_epoch_log(exp)
    counts = collections.Counter((r["cid"], r["epoch"]) for r in epochs)
    assert counts and max(counts.values()) == 1
    assert any(c["start"] < r["time"] and r["start"] < c["time"] for r in log for c in epochs)  # side by side
    state = exp.read_json("lsh/state.json")["pool"]
    assert state["phase"] == "done" and len(state["rounds"]) == 1
    best = exp.read_json("best.json")
    assert best["best"]["cid"] == summary["best"]["cid"] and best["experiment_dir"].startswith("s3://")
    files = exp.listdir(recursive=True)
    for name in ("results.csv", "results.json", "best_model.pt", "best_model.json", "lsh/search.json",
                 "lsh/spectra/c000.json", f"candidates/{best['best']['cid']}/state.pt"):
        assert name in files, name
    assert any(f.startswith("experiment_state") for f in files)          # Tune's own state, through pyarrow.fs
    assert any("events.out.tfevents" in f for f in files)                 # TensorBoard
    from lsh_tune.lyapunov import load_checkpoint_model

    with exp.local_file("best_model.pt") as path:
        local_model, ckpt = load_checkpoint_model(path)
    assert ckpt["cid"] == best["best"]["cid"] and set(ckpt["masks"])
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("s3")]  # no ./s3:/bucket/... directory

    # The Python API on the bucket: the result loads, and the search restores with its S3 location.
    from lsh_tune.api import LSHTuner, SearchResult

    for env_name, value in s3.env().items():
        os.environ.setdefault(env_name, value)
    result = SearchResult.load(exp.uri)  # the files where they are: the URI given, its endpoint included
    assert result.best["cid"] == best["best"]["cid"] and result.experiment_dir == exp.uri
    assert result.best_model == Storage(exp.uri).child("best_model.pt").uri  # the query stays at the end
    from_file = SearchResult.from_summary(best)  # best.json keeps the URI without the query (no endpoint there)
    assert from_file.best_model == f"{best['experiment_dir']}/best_model.pt"
    remote_model = result.load_best_model()  # read from the bucket through the URI the API returned
    assert all(torch.equal(v, local_model.state_dict()[k]) for k, v in remote_model.state_dict().items())
    assert Storage.split(Storage(exp.uri).child("best_model.pt").uri)[0].is_file("best_model.pt")
    assert LSHTuner.can_restore(exp.uri)
    restored = LSHTuner.restore(exp.uri)
    assert restored.config.storage_path == Storage(uri).uri and restored.config.name == "ptb_stacked_lstm"
    assert restored.config.experiment().is_file("lsh/state.json")
