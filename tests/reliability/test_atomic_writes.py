"""Every kind of state file survives a kill inside its write, and a full disk, with its previous version intact.

The kill is the kernel's: a forked child lowers ``RLIMIT_FSIZE`` below the size of the new version
and writes it through the project's real writer, so ``SIGXFSZ`` kills it while the bytes are going
out, whatever the writer does; the test asserts the child really died of it. With ``SIGXFSZ``
ignored the same limit is a full disk (the write fails with ``EFBIG``): the writer must raise
:class:`~lsh_tune.errors.LSHStorageError` naming the file and leave no temporary file behind.
Either way the file must still hold the previous version and read back. A writer that wrote the
target in place (no temp file + rename) fails these tests. The object-store side (a real moto S3
server): a writer that fails or is killed mid-stream leaves the previous object.
"""
from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _reliability import candidate, ptb_2k, search_cfg  # noqa: F401  (fixtures)
from lsh_tune.errors import LSHStorageError

LIMIT = 256  # bytes: every new version below is larger


def _in_child(write, *, full_disk: bool) -> tuple[int, int | None, str]:
    """Run ``write()`` in a forked child under ``RLIMIT_FSIZE = LIMIT``; (exit code, signal, its error)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code, why = 3, ""
        try:
            os.close(read_end)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN if full_disk else signal.SIG_DFL)
            resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            write()
            code = 0
        except LSHStorageError as e:
            code, why = (10 if e.errno == errno.EFBIG and "cannot write" in str(e) else 11), repr(e)
        except BaseException as e:
            code, why = 12, repr(e)
        finally:
            os.write(write_end, why.encode()[:4000])
            os._exit(code)
    os.close(write_end)
    deadline = time.time() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the writer hung in the child")
        time.sleep(0.01)
    why = os.read(read_end, 4000).decode(errors="replace")
    os.close(read_end)
    return os.waitstatus_to_exitcode(status), os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, why


def _temporaries(directory: Path) -> list[str]:
    return [str(p) for p in directory.rglob("*") if p.name.startswith(".") and p.is_file()]


def _check_survives(write_new, read, old, target: Path) -> None:
    """Kill inside the new write, then a full disk during it: ``read()`` still returns ``old``."""
    code, sig, why = _in_child(write_new, full_disk=False)
    assert sig == signal.SIGXFSZ, f"the child was not killed inside the write (exit {code}: {why})"
    assert read() == old, f"{target} changed after a kill inside its write"
    for leftover in _temporaries(target.parent):  # what a kill leaves: ignored by readers, cleaned here
        os.unlink(leftover)
    code, sig, why = _in_child(write_new, full_disk=True)
    assert (code, sig) == (10, None), f"a full disk must raise LSHStorageError (EFBIG) naming the file: {why}"
    assert read() == old and not _temporaries(target.parent)


def _ledger(cfg):
    from lsh_tune.search._ledger import SearchLedger

    cfg.save()
    return SearchLedger.create(cfg.pool_config(), cfg.hpo, cfg.space, cfg.experiment())


def test_pool_state(search_cfg):
    from lsh_tune.search._ledger import STATE_FILE, SearchLedger

    ledger = _ledger(search_cfg)
    read = lambda: SearchLedger.load(search_cfg.experiment()).state_dict()  # noqa: E731
    old = read()

    def write_new():
        ledger.pool.add({"death": "SET", "note": "x" * LIMIT})
        ledger.save()

    _check_survives(write_new, read, old, search_cfg.experiment().local_path(STATE_FILE))


def test_saved_search_config(search_cfg):
    from dataclasses import replace

    from lsh_tune.search.config import CONFIG_FILE, SearchConfig

    search_cfg.save()
    read = lambda: SearchConfig.load(search_cfg.experiment())  # noqa: E731
    bigger = replace(search_cfg, data_dir="d" * LIMIT)
    _check_survives(bigger.save, read, search_cfg, search_cfg.experiment().local_path(CONFIG_FILE))


def test_candidate_mirror(search_cfg, ptb_2k, one_torch_thread):
    from lsh_tune.search.candidate import candidate_dir, load_newest_state, save_state

    store = search_cfg.experiment()
    trainer, _, _, config = candidate(search_cfg, ptb_2k)
    meta = {"ls_history": [], "ls_epochs": [], "last_report": None}
    save_state(trainer, store, config["cid"], meta)

    def read():
        fresh = candidate(search_cfg, ptb_2k)[0]
        load_newest_state(fresh, [(store, candidate_dir(config["cid"]))])
        return fresh.epoch

    trainer.train_epoch()
    _check_survives(lambda: save_state(trainer, store, config["cid"], meta), read, 0,
                    store.local_path(f"{candidate_dir(config['cid'])}/state.pt"))


def test_reference_cache(tmp_path):
    from lsh_tune.lyapunov import ReferenceCache

    cache = ReferenceCache(tmp_path / "reference_cache")
    cache.save("k", np.zeros((1, 2)), np.zeros(2))
    read = lambda: cache.load("k").history.tolist()  # noqa: E731
    _check_survives(lambda: cache.save("k", np.ones((64, 8)), np.ones(8)), read, [[0.0, 0.0]],
                    Path(cache.path("k")))


def test_training_checkpoint(search_cfg, ptb_2k, tmp_path, one_torch_thread):
    trainer = candidate(search_cfg, ptb_2k)[0]
    path = tmp_path / "run" / "checkpoint.pt"
    trainer.save(path)

    def read():
        fresh = candidate(search_cfg, ptb_2k)[0]
        fresh.load(path)
        return fresh.epoch

    trainer.train_epoch()
    _check_survives(lambda: trainer.save(path), read, 0, path)


def test_searcher_state(search_cfg, tmp_path):
    import json

    pytest.importorskip("ray")
    from lsh_tune.search.tune.adapters import LSHSearcher

    from lsh_tune.search._ledger import SearchLedger

    # an in-memory ledger: save() writes only the searcher's own file
    searcher = LSHSearcher(SearchLedger.create(search_cfg.pool_config(), "random", search_cfg.space, None))
    path = tmp_path / "tune" / "searcher-state.json"
    path.parent.mkdir()
    searcher.save(str(path))
    read = lambda: json.loads(path.read_text())  # noqa: E731
    old = read()
    searcher.ledger.directory = "/" + "x" * LIMIT  # a bigger new version of the same file
    _check_survives(lambda: searcher.save(str(path)), read, old, path)


def test_a_log_record_is_all_or_nothing(tmp_path):
    from lsh_tune.storage import Storage

    store = Storage(tmp_path)
    store.append_record("epochs", {"epoch": 1})
    _check_survives(lambda: store.append_record("epochs", {"epoch": 2, "pad": "p" * LIMIT}),
                    lambda: store.read_records("epochs"), [{"epoch": 1}], tmp_path / "epochs" / "x")


def test_an_event_append_cut_by_a_full_disk_or_a_kill(tmp_path):
    """``events.jsonl`` is appended to, not replaced: a full disk inside the append leaves the file
    byte for byte as it was (the part written is cut back off); a kill inside it leaves a torn last
    line, which readers skip and report, and which the next writer (a resumed driver) cuts off."""
    from lsh_tune.search.views.events import EVENTS_FILE, EventLog, read_event_file

    log = EventLog(tmp_path, clock=lambda: 1.0)
    log.emit("epoch", cid="c000", epoch=1)
    path = tmp_path / EVENTS_FILE
    old = path.read_bytes()
    assert len(old) < LIMIT

    def append():
        log.emit("epoch", cid="c001", epoch=1, pad="p" * LIMIT)

    code, sig, why = _in_child(append, full_disk=True)
    assert (code, sig) == (10, None), f"a full disk must raise LSHStorageError (EFBIG) naming the file: {why}"
    assert path.read_bytes() == old
    code, sig, why = _in_child(append, full_disk=False)
    assert sig == signal.SIGXFSZ, f"the child was not killed inside the append (exit {code}: {why})"
    read = read_event_file(tmp_path)
    assert [e["cid"] for e in read.events] == ["c000"] and read.torn_bytes == LIMIT - len(old) > 0
    assert "torn last line" in read.warning
    EventLog(tmp_path, clock=lambda: 2.0).emit("epoch", cid="c002", epoch=1)
    read = read_event_file(tmp_path)
    assert [e["cid"] for e in read.events] == ["c000", "c002"] and read.torn_bytes == 0
    assert not _temporaries(tmp_path)


def test_object_store_write_that_fails_or_is_killed_mid_stream_leaves_the_old_object(s3, tmp_path):
    from lsh_tune.storage import Storage

    store = Storage(s3.uri("atomic"))
    store.write_json("lsh/state.json", {"version": "old"})

    def fail_half_way(f):
        f.write(b'{"version": "ne')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(LSHStorageError, match="cannot write s3://.*lsh/state.json"):
        store.write_with("lsh/state.json", fail_half_way)
    assert store.read_json("lsh/state.json") == {"version": "old"} and store.listdir("lsh") == ["state.json"]
    script = ("import os, signal\nfrom lsh_tune.storage import Storage\n"
              f"s = Storage({s3.uri('atomic')!r})\n"
              "def die(f):\n    f.write(b'{\"version\": \"ne' + b'x' * 10_000_000)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "s.write_with('lsh/state.json', die)\n")
    r = subprocess.run([sys.executable, "-c", script], env={**os.environ, **s3.env()}, timeout=120,
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert store.read_json("lsh/state.json") == {"version": "old"} and store.listdir("lsh") == ["state.json"]
