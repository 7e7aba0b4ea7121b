"""Plain helper functions of the test suite, defined once (fixtures live in ``tests/conftest.py``).

Test modules import from here (``from helpers import kill_tree``), never from one another.
``tests/`` is on ``sys.path`` for every test (pytest puts the directory of ``tests/conftest.py``
there); a subprocess that needs these helpers gets it on its ``PYTHONPATH``.

Killing: a test that SIGKILLs a driver must also kill everything that driver started (Ray's GCS,
raylet, workers), by PID or by the driver's own process group, never by a name, and must wait
until all of them are gone, so the next step (a resume, the next test) never meets a survivor
still writing to its files or holding its ports.
"""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["REPO", "SHARED_DATA", "closed_port", "descendants", "free_port", "kill_pids", "kill_processes_using",
           "load_benchmark",
           "kill_tree", "run_cli", "unigram_perplexity", "wait_gone"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
#: Seconds :func:`wait_gone` waits for SIGKILLed processes to disappear. SIGKILL cannot be caught;
#: the kernel frees a killed process in well under a second even on a busy 2-core machine, so 30 s
#: only bounds a hang (a process stuck in uninterruptible I/O), it is never the expected wait.
KILL_WAIT_S = 30.0


# --------------------------------------------------------------------------- processes
def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, ...), or ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _processes() -> dict[int, list[str]]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            fields = _stat_fields(int(d))
            if fields is not None:
                out[int(d)] = fields
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...), from ``/proc``.

    Collect them *before* killing ``pid``: once it dies its orphans are re-parented and no longer
    found under it.
    """
    children: dict[int, list[int]] = {}
    for child, fields in _processes().items():
        children.setdefault(int(fields[1]), []).append(child)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _group(pgid: int) -> list[int]:
    """The live processes of the process group ``pgid``."""
    return [pid for pid, fields in _processes().items() if int(fields[2]) == pgid and pid != os.getpid()]


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (a killed process its parent has not reaped yet is gone for us)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def wait_gone(pids, timeout_s: float = KILL_WAIT_S) -> None:
    """Wait until none of ``pids`` is alive (:data:`KILL_WAIT_S`).

    Raises:
        AssertionError: one survived ``timeout_s`` seconds after its SIGKILL.
    """
    deadline = time.time() + timeout_s
    left = [p for p in pids if _alive(p)]
    while left and time.time() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    assert not left, f"processes {left} still alive {timeout_s:.0f} s after SIGKILL"


def kill_pids(pids) -> None:
    """SIGKILL each of ``pids`` (one already gone is skipped) and wait until all are gone."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(pids)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver ``proc`` and everything it started, then wait until all of it is gone.

    Everything it started: its descendants (collected before it dies) and, when it leads its own
    process group (``Popen(..., start_new_session=True)``), every member of that group (daemons that
    were re-parented before the kill). The driver is reaped (``proc.wait()``); the others are
    waited for until they no longer exist (:func:`wait_gone`). Safe to call on a driver that has
    already exited (its group is still swept).
    """
    started = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    members = _group(proc.pid)  # pgid == the leader's pid: only processes of proc's own session
    if members:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kill_pids(started + members)
    proc.wait()
    kill_pids(_group(proc.pid))  # the group once more: nothing of that session may survive


def kill_processes_using(marker: str) -> None:
    """SIGKILL every process (but this one) whose command line contains ``marker`` — a private temp dir
    only the processes of one test use — and wait until they are gone."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    kill_pids(pids)


# --------------------------------------------------------------------------- ports
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: bound by this process, then closed (a connect is refused)."""
    return free_port()


# --------------------------------------------------------------------------- the command line
def run_cli(*args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m lsh_tune ARGS`` in a subprocess from the repository; returns the CompletedProcess."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "lsh_tune", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(REPO))


# --------------------------------------------------------------------------- numbers
def unigram_perplexity(train, valid, vocab_size: int) -> float:
    """Perplexity on ``valid`` of the add-one-smoothed unigram model of ``train`` (torch tensors)."""
    import torch

    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return math.exp(-logp[valid].mean().item())


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` imported as module ``name`` (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
