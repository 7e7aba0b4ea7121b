"""Shared fixtures: real PTB (vendored copy) and small slices of it."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ptb_full():
    from lsh_tune.data import load_corpus
    return load_corpus("ptb")


@pytest.fixture(scope="session")
def ptb_slice():
    """First 20k tokens of each PTB split (vocabulary of the full corpus)."""
    from lsh_tune.data import load_corpus
    return load_corpus("ptb", max_tokens=20000)


def unigram_perplexity(train: torch.Tensor, valid: torch.Tensor, vocab_size: int) -> float:
    """Perplexity on ``valid`` of the add-one-smoothed unigram model of ``train``."""
    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return math.exp(-logp[valid].mean().item())


def run_cli(*args: str, timeout: int = 600):
    """Run ``python -m lsh_tune ARGS`` in a subprocess; returns CompletedProcess."""
    import subprocess
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "lsh_tune", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(REPO))


@pytest.fixture
def one_torch_thread():
    """Run torch on one thread: small matrices gain nothing from two, and two oversubscribe a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: One real tiny LSH search (pool 5 → 4 → 2 finalists, E = 1, reference 2 epochs), shared by the events,
#: report, figures and TensorBoard tests (:func:`tiny_search`).
TINY_SEARCH = ("search", "--model", "stacked_lstm", "--preset", "tiny", "--corpus", "ptb", "--max-tokens", "3000",
               "--sparsity", "0.67", "--hpo", "tpe", "--metric", "ls", "--pool", "5", "--rounds-every", "1",
               "--final-k", "2", "--max-epochs", "3", "--reference-epochs", "2", "--seed", "0",
               "--gpus-per-trial", "0", "--cpus-per-trial", "1", "--address", "local", "--num-cpus", "2")


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory):
    """``lsh-tune search`` run once at the default verbosity in a subprocess (its own local Ray):
    ``(experiment directory, CompletedProcess, wall seconds)``."""
    import time

    storage = tmp_path_factory.mktemp("tiny-search")
    t0 = time.perf_counter()
    run = run_cli(*TINY_SEARCH, "--storage-path", str(storage), "--name", "tiny",
                  "--ray-temp-dir", f"/tmp/lshtiny{os.getpid()}", timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    return storage / "tiny", run, time.perf_counter() - t0
