"""The reference lease (``reference_cache/<key>.lease.json``): one worker trains a dense reference, a
second one waits for it (and says so) and loads it; a stale lease (holder gone, or no heartbeat) is
taken over; released on finish and on error. Fake holders for the rules (local directory and a real
S3-compatible server), real tiny references for ``train_reference``, and two concurrent real tiny
searches with the same reference, which is trained once (from its epoch log)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from helpers import REPO, descendants, kill_tree
from lsh_tune.errors import LSHUsageError
from lsh_tune.search.run._lease import TIMEOUT_ENV, Lease, _pid_namespace, lease_timeout_s
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.run.reference import (read_reference_log, reference_lease, reference_plan, search_corpus,
                                       train_reference)
from lsh_tune.storage import Storage

NAME = "k.lease.json"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Storage(tmp_path / "cache")
    return Storage(request.getfixturevalue("s3").uri(f"lease-{tmp_path.name}"))


def _lease(store: Storage, lines: list | None = None, **kw) -> Lease:
    kw = {"timeout_s": 60.0, "poll_s": 0.05, "settle_s": 0.2, **kw}
    return Lease(store, NAME, what="dense reference k", say=(lines.append if lines is not None else None), **kw)


def _fake(store: Storage, **fields) -> dict:
    """A lease record of another worker, written as the lease."""
    now = time.time()
    record = {"holder": "pid 999999 on elsewhere", "host": "elsewhere", "pidns": None, "pid": 999999,
              "token": "f" * 32, "created": now, "heartbeat": now, "timeout_s": 60.0, **fields}
    store.write_json(NAME, record)
    return record


def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_blocks_others_and_its_release_frees_the_lease(store):
    a, b = _lease(store), _lease(store)
    assert a.try_acquire() is None and a.held
    record = store.read_json(NAME)
    assert record["token"] == a.token and record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert abs(record["heartbeat"] - time.time()) < 30 and record["holder"] == f"pid {os.getpid()} on {a.host}"
    assert b.try_acquire()["token"] == a.token and not b.held        # a fresh lease blocks (same host, live pid)
    assert store.read_json(NAME)["token"] == a.token
    a.release()
    assert not store.is_file(NAME) and not a.held
    assert b.try_acquire() is None and store.read_json(NAME)["token"] == b.token
    other = _fake(store)                                              # b's lease taken over by someone else:
    b.release()                                                       # b's release leaves theirs alone
    assert store.read_json(NAME) == other


def test_a_waiter_says_once_whom_it_waits_for_then_takes_the_finished_result(tmp_path):
    store, lines = Storage(tmp_path), []
    holder, waiter = _lease(store), _lease(store, lines)
    assert holder.try_acquire() is None
    done: dict = {}
    got: dict = {}
    thread = threading.Thread(target=lambda: got.update(value=waiter.wait_for(lambda: done.get("result"))))
    thread.start()
    deadline = time.time() + 30
    while not lines and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)                                                   # several more polls: still one line
    assert len(lines) == 1 and f"being trained by {holder.holder}" in lines[0] and "waiting" in lines[0]
    assert store.uri_of(NAME) in lines[0] and thread.is_alive()
    done["result"] = "the trained reference"
    holder.release()
    thread.join(30)
    assert got["value"] == "the trained reference" and not waiter.held and not store.is_file(NAME)
    # Nothing to wait for: the lease is taken (None: do the work), and the result is asked for again after.
    assert waiter.wait_for(lambda: None) is None and waiter.held
    waiter.release()
    late = {"n": 0}

    def finished_meanwhile():
        late["n"] += 1
        return None if late["n"] == 1 else "finished by a holder that released just before"

    assert waiter.wait_for(finished_meanwhile) == "finished by a holder that released just before"
    assert not waiter.held and not store.is_file(NAME) and len(lines) == 1


def test_a_lease_whose_process_is_gone_is_taken_over_at_once_and_the_taker_says_so(store):
    dead = _dead_pid()
    here = {"host": socket.gethostname(), "pidns": _pid_namespace(), "holder": f"pid {dead} on here"}
    elsewhere = _fake(store, pid=dead)                 # the same PID on another host: not ours to judge
    lines = []
    taker = _lease(store, lines)
    assert taker.try_acquire() == elsewhere and lines == []
    _fake(store, pid=dead, **here)
    assert taker.try_acquire() is None and store.read_json(NAME)["token"] == taker.token
    assert lines == [f"dense reference k: taking over the lease of pid {dead} on here (its process {dead} on "
                     f"{socket.gethostname()} is gone); resuming from its newest saved state"]
    taker.release()


def test_a_lease_without_heartbeat_for_the_timeout_is_taken_over(store):
    lines = []
    _fake(store, heartbeat=time.time() - 1000)                     # last heartbeat 1000 s ago (timeout 60 s)
    taker = _lease(store, lines)
    assert taker.try_acquire() is None and store.read_json(NAME)["token"] == taker.token
    assert len(lines) == 1 and "its heartbeat is 1000 s old (timeout 60 s)" in lines[0]
    taker.release()


def test_a_heartbeat_that_stops_changing_goes_stale_on_the_waiters_own_clock_and_a_live_one_never_does(tmp_path):
    store, lines = Storage(tmp_path), []
    _fake(store, heartbeat=time.time() + 3600)        # a holder whose clock runs an hour ahead, then stops
    taker = _lease(store, lines, timeout_s=0.3)
    assert taker.try_acquire()["token"] == "f" * 32
    time.sleep(0.4)
    assert taker.try_acquire() is None and re.search(r"has not changed for \d+ s \(timeout 0.3 s\)", lines[0])
    taker.release()
    store.write_bytes(NAME, b"\x00garbage")                         # a lease that does not read back: the same rule
    assert taker.try_acquire() == {}
    time.sleep(0.4)
    assert taker.try_acquire() is None and "taking over the lease of an unreadable lease" in lines[1]
    taker.release()

    live = _lease(store, timeout_s=0.3, heartbeat_s=0.05)           # a holder that keeps beating
    assert live.try_acquire() is None
    beats = set()
    deadline = time.time() + 1.5
    while time.time() < deadline:
        assert taker.try_acquire() is not None
        beats.add(store.read_json(NAME)["heartbeat"])
        time.sleep(0.05)
    assert len(beats) > 3 and not taker.held
    live.release()
    assert not store.is_file(NAME)


def test_a_holder_whose_lease_was_taken_over_says_so_once_and_leaves_the_new_lease(tmp_path):
    store, lines = Storage(tmp_path), []
    holder = _lease(store, lines, heartbeat_s=0.05)
    assert holder.try_acquire() is None
    other = _fake(store)
    time.sleep(0.4)
    assert lines == ["dense reference k: lost its lease (now held by pid 999999 on elsewhere; this worker was "
                     "thought dead); finishing anyway (same result)"]
    assert store.read_json(NAME) == other                          # no heartbeat overwrote it
    holder.release()
    assert store.read_json(NAME) == other


def test_the_timeout_comes_from_the_argument_the_environment_or_the_default(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert lease_timeout_s() == 120.0 and lease_timeout_s(5) == 5.0
    monkeypatch.setenv(TIMEOUT_ENV, "30")
    assert lease_timeout_s() == 30.0 and lease_timeout_s(7.5) == 7.5
    lease = Lease(Storage("/tmp"), NAME, what="x")
    assert (lease.timeout_s, lease.heartbeat_s, lease.poll_s) == (30.0, 7.5, 2.0)
    for bad in ("0", "-1", "soon", "inf", "nan"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(LSHUsageError, match=f"{TIMEOUT_ENV}='{bad}' must be a number of seconds > 0"):
            lease_timeout_s()


# ----------------------------------------------------------------- real tiny references (Ray-free)
EPOCHS = 3


def _cfg(tmp_path, **kw) -> SearchConfig:
    kw = {"model": "stacked_lstm", "preset": "tiny", "max_tokens": 2000, "reference_epochs": EPOCHS, "pool": 4,
          "rounds_every": 1, "final_k": 2, "max_epochs": 2, "gpus_per_trial": 0, **kw}
    return SearchConfig(storage_path=str(tmp_path / "runs"), **kw)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_second_trainer_waits_for_the_first_and_loads_its_reference_trained_once(tmp_path):
    cfg = _cfg(tmp_path)
    corpus = search_corpus(cfg)
    plan = reference_plan(cfg, corpus)
    said, second = [], {}
    waiting = threading.Event()

    def say(line):
        said.append(line)
        waiting.set()

    def run_second():
        second["ref"] = train_reference(plan, corpus, tags={"run": "second"}, say=say,
                                        on_epoch=lambda p: second.setdefault("trained", []).append(p["epoch"]))

    thread = threading.Thread(target=run_second)

    def first_epoch(progress):
        if progress["epoch"] == 1:  # the first trainer holds the lease: start the second, let it look
            thread.start()
            assert waiting.wait(60), "the second trainer never said it waits"

    first = train_reference(plan, corpus, tags={"run": "first"}, on_epoch=first_epoch)
    thread.join(60)
    assert "trained" not in second                                  # the second trained no epoch ...
    np.testing.assert_array_equal(second["ref"].history, first.history)  # ... and has the same reference
    assert [(r["epoch"], r["run"]) for r in read_reference_log(plan)] == [(e, "first") for e in range(1, EPOCHS + 1)]
    assert len(said) == 1 and f"being trained by pid {os.getpid()} on {socket.gethostname()}" in said[0]
    assert not plan.store().is_file(f"{plan.key}.lease.json")      # released when done


@pytest.mark.usefixtures("one_torch_thread")
def test_a_trainer_killed_holding_the_lease_is_taken_over_at_once_and_no_finished_epoch_is_lost(tmp_path):
    """A holder SIGKILLed after epoch 2 leaves its lease behind; the next trainer takes it over without
    waiting for the timeout and resumes at epoch 3. An error releases the lease."""
    cfg = _cfg(tmp_path)
    corpus = search_corpus(cfg)
    plan = reference_plan(cfg, corpus)
    script = textwrap.dedent("""
        import json, os, signal, sys, torch
        torch.set_num_threads(1)
        from lsh_tune.search.config import SearchConfig
        from lsh_tune.search.run.reference import reference_plan, search_corpus, train_reference
        cfg = SearchConfig.from_dict(json.loads(sys.argv[1]))
        corpus = search_corpus(cfg)
        def die(p):
            if p["epoch"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # a machine losing power: no finally runs
        train_reference(reference_plan(cfg, corpus), corpus, tags={"run": "killed"}, on_epoch=die)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(cfg.to_dict())], cwd=REPO,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    lease = plan.store().read_json(f"{plan.key}.lease.json")       # left behind by the dead holder
    assert lease["pid"] == proc.pid and lease["host"] == socket.gethostname()

    said, trained, taken = [], [], {}
    taker = threading.Thread(target=lambda: taken.update(ref=train_reference(
        plan, corpus, tags={"run": "taker"}, say=said.append, on_epoch=lambda p: trained.append(p["epoch"]),
        lease_timeout_s=600)), daemon=True)
    taker.start()
    taker.join(120)                                                 # far less than the 600 s timeout
    assert not taker.is_alive(), f"the taker still waits for the dead holder: {said}"
    ref = taken["ref"]
    assert trained == [3]                                           # epochs 1-2 of the dead holder kept
    assert len(said) == 1 and f"taking over the lease of pid {lease['pid']}" in said[0] and "is gone" in said[0]
    log = read_reference_log(plan)
    assert [(r["epoch"], r["run"]) for r in log] == [(1, "killed"), (2, "killed"), (3, "taker")]
    assert ref.history.shape == (EPOCHS + 1, 128) and not plan.store().is_file(f"{plan.key}.lease.json")

    other = reference_plan(_cfg(tmp_path, seed=1), corpus)

    class Failed(Exception):
        pass

    def fail(progress):
        raise Failed

    with pytest.raises(Failed):
        train_reference(other, corpus, on_epoch=fail)
    assert not other.store().is_file(f"{other.key}.lease.json")    # released on error
    assert reference_lease(other).try_acquire() is None            # free for the next trainer at once


# ----------------------------------------------------------------- two concurrent real tiny searches
#: The smallest real search: pool 2 → 1 finalist, E = 1, a 3-epoch reference; the two searches differ
#: only in their name, so they share the storage path's reference cache and the reference key.
TWO_SEARCHES = ("search", "--model", "stacked_lstm", "--preset", "tiny", "--corpus", "ptb", "--max-tokens", "2000",
                "--sparsity", "0.67", "--hpo", "random", "--metric", "ls", "--pool", "2", "--rounds-every", "1",
                "--final-k", "1", "--max-epochs", "2", "--reference-epochs", str(EPOCHS), "--seed", "0",
                "--gpus-per-trial", "0", "--cpus-per-trial", "1", "--address", "local", "--num-cpus", "2",
                "--verbose", "0", "--json")


class _Search:
    """``lsh-tune search`` in a subprocess of its own session, its stdout+stderr collected line by line."""

    def __init__(self, storage, name: str) -> None:
        args = [sys.executable, "-m", "lsh_tune", *TWO_SEARCHES, "--storage-path", str(storage), "--name", name,
                "--ray-temp-dir", f"/tmp/lshlease{os.getpid()}{name[0]}"]
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True,
                                     env=dict(os.environ, PYTHONPATH=str(REPO), RAY_DEDUP_LOGS="0"))
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, needle: str, timeout_s: float) -> str:
        deadline = time.time() + timeout_s
        while time.time() < deadline and self.proc.poll() is None:
            hit = next((line for line in list(self.lines) if needle in line), None)
            if hit is not None:
                return hit
            time.sleep(0.1)
        raise AssertionError(f"no line with {needle!r} in:\n{self.text()[-4000:]}")

    def finish(self, timeout_s: float) -> dict:
        self.proc.wait(timeout_s)
        self.reader.join(30)
        assert self.proc.returncode == 0, self.text()[-4000:]
        return json.loads([line for line in self.lines if line.startswith("{")][-1])


@pytest.mark.ray
@pytest.mark.slow
def test_two_concurrent_searches_with_the_same_reference_train_it_once(tmp_path):
    """Search A's reference trial takes the lease and is held still (SIGSTOP, by its PID from the lease)
    while search B starts; B's reference trial says it waits for A's trainer, then, once A's trainer
    goes on, loads A's reference. From the reference's epoch log: every epoch once, all by A's trainer."""
    pytest.importorskip("ray")
    from lsh_tune.search.views.events import read_events

    cfg = SearchConfig(storage_path=str(tmp_path), model="stacked_lstm", preset="tiny", max_tokens=2000,
                       sparsity=0.67, hpo="random", metric="ls", pool=2, rounds_every=1, final_k=1, max_epochs=2,
                       reference_epochs=EPOCHS, seed=0, gpus_per_trial=0)
    plan = reference_plan(cfg, search_corpus(cfg))
    lease_file = tmp_path / "reference_cache" / f"{plan.key}.lease.json"
    a = _Search(tmp_path, "a")
    b = trainer = None
    stopped = False
    try:
        deadline = time.time() + 300
        while not lease_file.exists() and time.time() < deadline and a.proc.poll() is None:
            time.sleep(0.02)
        trainer = json.loads(lease_file.read_text())["pid"]
        assert trainer in descendants(a.proc.pid)                  # A's reference trial, on one of A's workers
        os.kill(trainer, signal.SIGSTOP)
        stopped = True
        assert not (tmp_path / "reference_cache" / f"{plan.key}.npz").exists(), "A finished before the stop"
        b = _Search(tmp_path, "b")
        line = b.wait_for_line("waiting for it, being trained by", timeout_s=300)
        assert f"being trained by pid {trainer} on {socket.gethostname()}" in line and plan.key in line
        os.kill(trainer, signal.SIGCONT)
        stopped = False
        summary_a, summary_b = a.finish(600), b.finish(600)
    finally:
        if stopped:
            os.kill(trainer, signal.SIGCONT)
        for search in (a, b):
            if search is not None:
                kill_tree(search.proc)

    log = read_reference_log(plan)
    assert [r["epoch"] for r in log] == list(range(1, EPOCHS + 1))   # trained once ...
    assert {r["pid"] for r in log} == {trainer}                      # ... by A's trainer alone
    assert len(read_events(tmp_path / "a", "reference_epoch")) == EPOCHS
    assert read_events(tmp_path / "b", "reference_epoch") == []      # B trained no reference epoch
    assert [e["cached"] for e in read_events(tmp_path / "b", "reference_done")] == [True]
    assert sum("waiting for it" in line for line in b.lines) == 1 and "waiting for it" not in a.text()
    # Both searches ranked against the same reference.
    ref_a, ref_b = (json.loads((tmp_path / n / "lsh" / "reference_ls.json").read_text()) for n in "ab")
    assert len(ref_a) == EPOCHS + 1 and ref_a == ref_b
    assert summary_a["reference"]["val_ppl"] == summary_b["reference"]["val_ppl"] > 1
    assert not lease_file.exists()                                   # released
