"""``lsh-tune search`` with faults injected at exact instants (test-only; the product has no hooks).

    LSH_FAULTS='{"decide_round": 0}' python tests/reliability/_faulty_driver.py --hpo tpe ...

Faults (``LSH_FAULTS``, JSON), each checked in the driver unless noted:

* ``reference_epoch: k`` — the dense reference's trial reports its epoch ``k`` (not the last): die.
* ``boundary: [r, n]`` — the ``n``-th new round boundary of selection round ``r`` (0-based) reaches
  the ledger: die before it is recorded (mid-round).
* ``decide_round: r`` — round ``r`` has been ranked and refilled in memory: die before it is saved.
* ``disk_full_rounds: n`` — every write of ``lsh/state.json`` once ``n`` rounds are decided runs out
  of space half-way (``ENOSPC`` from inside the real all-or-nothing writer).
* ``final: true`` — the first finalist's final result reaches the ledger: die before it is recorded.
* ``worker: {"epoch": k, "marker": path}`` — in the trial workers (a Ray worker setup hook): the
  first sparse candidate that starts validating its epoch ``k`` (its training batches done, the
  epoch not finished) writes ``marker`` and SIGKILLs its own worker process; only once.

"Die" is a machine losing power: SIGKILL to every process the driver started (Ray's daemons and
workers), then to the driver.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path

try:  # tests/helpers.py: tests/ is on the PYTHONPATH the test gives this driver
    from helpers import descendants
except ImportError:  # a Ray worker importing this module for its setup hook only (it never calls die())
    descendants = None

FAULTS = json.loads(os.environ.get("LSH_FAULTS") or "{}")


def die() -> None:
    """SIGKILL this driver and everything it started, at once."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def _is_new_boundary(pool, cid: str, epoch: int) -> bool:
    c = pool.candidates.get(cid)
    return (c is not None and c.status == "active" and c.pending is None
            and not (c.epochs and int(epoch) <= c.epochs[-1]))


def _install_ledger_faults() -> None:
    from lsh_tune.search._ledger import STATE_FILE, SearchLedger
    from lsh_tune.search._pool import CandidatePool

    if "boundary" in FAULTS:
        r, nth = FAULTS["boundary"]
        on_boundary, seen = SearchLedger.on_boundary, set()

        def counted(self, cid, epoch, *args, **kwargs):
            if self.pool.round == r and _is_new_boundary(self.pool, cid, epoch):
                seen.add(cid)
                if len(seen) == nth:
                    die()
            return on_boundary(self, cid, epoch, *args, **kwargs)

        SearchLedger.on_boundary = counted
    if "decide_round" in FAULTS:
        decide = CandidatePool.decide

        def ranked_then_die(self, generate):
            decision = decide(self, generate)
            if decision.round == FAULTS["decide_round"]:
                die()
            return decision

        CandidatePool.decide = ranked_then_die
    if "disk_full_rounds" in FAULTS:
        save = SearchLedger.save

        def full_disk(self):
            if self.storage is None or len(self.pool.rounds) < FAULTS["disk_full_rounds"]:
                return save(self)
            data = json.dumps(self.state_dict(), indent=1).encode()

            def half_then_enospc(f):
                f.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")

            self.storage.write_with(STATE_FILE, half_then_enospc)

        SearchLedger.save = full_disk
    if FAULTS.get("final"):
        on_final = SearchLedger.on_final

        def first_final_then_die(self, cid, metrics):
            if self.pool.candidates[cid].status == "final":
                die()
            return on_final(self, cid, metrics)

        SearchLedger.on_final = first_final_then_die


def _install_reference_fault() -> None:
    from lsh_tune.search.tune.adapters import LSHScheduler
    from lsh_tune.search.keys import CID_KEY, REFERENCE_CID

    on_result = LSHScheduler.on_trial_result

    def reference_then_die(self, controller, trial, result):
        if (result.get(CID_KEY) == REFERENCE_CID and result.get("epoch") == FAULTS["reference_epoch"]
                and not result.get("reference_done")):
            die()
        return on_result(self, controller, trial, result)

    LSHScheduler.on_trial_result = reference_then_die


def _install_worker_hook() -> None:
    """Ray workers run :func:`worker_setup` (a setup hook added to every ``ray.init``)."""
    import ray

    init = ray.init

    def with_hook(*args, **kwargs):
        env = dict(kwargs.pop("runtime_env", None) or {})
        env["worker_process_setup_hook"] = f"{Path(__file__).stem}.worker_setup"
        env["env_vars"] = {**env.get("env_vars", {}), "LSH_FAULTS": json.dumps(FAULTS)}
        return init(*args, runtime_env=env, **kwargs)

    ray.init = with_hook


def worker_setup() -> None:
    """In a Ray worker: kill this process once, mid-epoch, as ``worker`` says (see the module docstring)."""
    spec = FAULTS.get("worker")
    if not spec:
        return
    from lsh_tune.train.trainer import Trainer

    evaluate = Trainer.evaluate

    def dying_evaluate(self, split="valid"):
        if split == "valid" and self.hooks and self.state.epoch == spec["epoch"] - 1:
            try:
                fd = os.open(spec["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return evaluate(self, split)
            os.write(fd, json.dumps({"pid": os.getpid(), "epoch": spec["epoch"], "seed": self.seed}).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        return evaluate(self, split)

    Trainer.evaluate = dying_evaluate


def main(argv: list[str]) -> int:
    _install_ledger_faults()
    if "reference_epoch" in FAULTS:
        _install_reference_fault()
    if "worker" in FAULTS:
        _install_worker_hook()
    from lsh_tune.cli.search import main as search

    return search(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
