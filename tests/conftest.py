"""Shared fixtures, each defined once: real PTB (vendored copy) and small slices of it, one torch thread,
a real S3-compatible server, one real tiny search. Plain helper functions are in ``tests/helpers.py``."""
from __future__ import annotations

import os

import pytest
import torch

from helpers import run_cli

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# The suite's Ray instances declare GPUs this machine may not have (num_gpus=4, cluster_utils nodes, the
# fake cluster): their trials train on CPU (lsh_tune.search.tune.trainable.CPU_FALLBACK_ENV), inherited
# by every Ray worker and subprocess the tests start.
os.environ.setdefault("LSH_ALLOW_CPU_FALLBACK", "1")


@pytest.fixture(scope="session")
def ptb_full():
    from lsh_tune.data import load_corpus
    return load_corpus("ptb")


@pytest.fixture(scope="session")
def ptb_slice():
    """First 20k tokens of each PTB split (vocabulary of the full corpus)."""
    from lsh_tune.data import load_corpus
    return load_corpus("ptb", max_tokens=20000)


@pytest.fixture
def one_torch_thread():
    """Run torch on one thread: small matrices gain nothing from two, and two oversubscribe a busy machine
    (torch's CPU LSTM runs ~10x slower with 2 threads than with 1 on the shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def s3():
    """A real S3-compatible server on 127.0.0.1 (moto's server mode, ``tests/s3_server.py``), one per
    test module; stopped (by PID) when the module's tests are done."""
    from s3_server import start_s3_server

    server = start_s3_server()
    yield server
    server.stop()


#: One real tiny LSH search (pool 5 → 4 → 2 finalists, E = 1, reference 2 epochs), shared by the events,
#: report, figures and TensorBoard tests (:func:`tiny_search`).
TINY_SEARCH = ("search", "--model", "stacked_lstm", "--preset", "tiny", "--corpus", "ptb", "--max-tokens", "3000",
               "--sparsity", "0.67", "--hpo", "tpe", "--metric", "ls", "--pool", "5", "--rounds-every", "1",
               "--final-k", "2", "--max-epochs", "3", "--reference-epochs", "2", "--seed", "0",
               "--cpus-per-trial", "1", "--address", "local", "--num-cpus", "2")  # --gpus-per-trial: auto


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
