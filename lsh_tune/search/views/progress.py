"""The driver's account of a running search: trial results and decided rounds become events, with ETAs.

Ray-free. :class:`SearchProgress` is fed by the Tune callback (:mod:`lsh_tune.search.tune._events_callback`)
with every trial result and asked after every controller step whether the ledger decided a round;
it writes the events of :mod:`lsh_tune.search.views.events`. One object per experiment and process
(:func:`progress_for`), so the callback that ``Tuner.restore`` unpickles finds the one
:func:`~lsh_tune.search.tune.tuner.run_search` set up.

ETA (seconds): the rounds still planned (:func:`~lsh_tune.search.plan_rounds`) each take
⌈n / slots⌉ · E epochs of wall time, the finalists ⌈final_k / slots⌉ · (epochs they still need);
one epoch takes what epochs have taken so far, overheads included (:meth:`SearchProgress.mean_epoch_s`).
"""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable

from lsh_tune.search._pool import ACTIVE, plan_rounds
from lsh_tune.search.keys import (BOUNDARY_KEY, CID_KEY, FINAL_KEY, OWN_FIT_DISTANCE_KEY, REFERENCE_CID,
                                  REFERENCE_DONE_KEY, REFERENCE_EPOCHS_KEY, REFERENCE_LS_KEYS, REPLAY_KEY)
from lsh_tune.search.views.events import EventLog
from lsh_tune.storage import Storage

__all__ = ["SearchProgress", "progress_for", "config_label"]

_EPOCH_KEYS = ("val_ppl", "val_loss", "density", "epoch_time_s", "ls_time_s")
_REGISTRY: dict[str, "SearchProgress"] = {}
_LOCK = threading.Lock()


def config_label(config: dict) -> str:
    """A candidate's hyperparameters in one short token: ``ER/magnitude/nonzeros/random/0.5``."""
    return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in config.values())


def _number(result: dict, key: str) -> float | None:
    value = result.get(key)
    return None if value is None else float(value)


class SearchProgress:
    """Events of one search from what its driver sees.

    Args:
        log: where the events go.
        ledger_opener: ``() -> SearchLedger`` of the experiment (the driver's shared ledger).
        slots: trials that run at once (for the ETA).
        clock: monotonic-enough wall clock (tests).
    """

    def __init__(self, log: EventLog, ledger_opener: Callable[[], Any], slots: int = 1,
                 clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self._ledger = ledger_opener
        self.slots = max(1, int(slots))
        self.clock = clock
        self.started = clock()
        self._epochs_done = 0
        self.val_ppl: dict[tuple[str, int], float] = {}
        self._rounds_seen = len(log.of_kind("round"))
        self._finals_seen = {e["cid"] for e in log.of_kind("finalist_done")}

    @property
    def ledger(self):
        return self._ledger()

    # ------------------------------------------------------------- facts
    def start(self, **facts: Any) -> None:
        """Emit ``search_start`` with the schedule and ``facts`` (``name``, ``unigram``, ``tokens`` ...)."""
        pool = self.ledger.pool
        cfg = pool.config
        signal = self.ledger.signal
        self.log.emit("search_start", pool=cfg.pool_size, rounds_every=cfg.rounds_every, final_k=cfg.final_k,
                      max_epochs=cfg.max_epochs, metric=cfg.metric, signal=signal.describe(),
                      signal_label=signal.label, untrained_ppl=cfg.untrained_ppl, plan=plan_rounds(cfg),
                      slots=self.slots, resumed=self._rounds_seen > 0 or pool.round > 0, **facts)

    def mean_epoch_s(self) -> float | None:
        """Wall seconds one epoch has held a slot so far, everything included (training, validation, LS,
        trial start/pause/restore): ``elapsed × slots / epochs trained`` (reference epochs too);
        ``None`` before the first epoch."""
        if not self._epochs_done:
            return None
        return (self.clock() - self.started) * self.slots / self._epochs_done

    def eta_s(self) -> float | None:
        """Seconds until the search ends (see the module docstring); ``None`` before an epoch time is known."""
        t = self.mean_epoch_s()
        if t is None:
            return None
        pool = self.ledger.pool
        cfg = pool.config
        plan = plan_rounds(cfg)
        walls = sum(math.ceil(n / self.slots) * cfg.rounds_every for n, _, _ in plan[pool.round:])
        if pool.round < len(plan):
            left = cfg.max_epochs - len(plan) * cfg.rounds_every
        else:
            left = max((cfg.max_epochs - self._epochs_of(c) for c in pool.alive()), default=0)
        walls += math.ceil(min(cfg.final_k, len(pool.alive()) or cfg.final_k) / self.slots) * max(0, left)
        return walls * t

    def _epochs_of(self, candidate) -> int:
        seen = [e for (cid, e) in self.val_ppl if cid == candidate.cid]
        return max(seen + list(candidate.epochs) + [0])

    # ----------------------------------------------------------- results
    def on_result(self, result: dict) -> None:
        """One trial result (Tune's, as the trainable reported it)."""
        cid = str(result.get(CID_KEY))
        if result.get(REPLAY_KEY) or "epoch" not in result:
            return
        if cid == REFERENCE_CID:
            self._on_reference(result)
            return
        epoch = int(result["epoch"])
        fields = {k: _number(result, k) for k in _EPOCH_KEYS if result.get(k) is not None}
        if result.get(BOUNDARY_KEY):
            own = result.get(OWN_FIT_DISTANCE_KEY)
            fields[OWN_FIT_DISTANCE_KEY] = None if own is None else float(own)
        status = self.ledger.pool.candidates[cid].status if cid in self.ledger.pool.candidates else ACTIVE
        self.log.emit("epoch", cid=cid, epoch=epoch, phase="selection" if status == ACTIVE else "final",
                      max_epochs=self.ledger.pool.config.max_epochs, **fields)
        if "val_ppl" in fields:
            self.val_ppl[(cid, epoch)] = fields["val_ppl"]
        self._epochs_done += 1
        if result.get(FINAL_KEY) and cid not in self._finals_seen:
            self._finals_seen.add(cid)
            self.log.emit("finalist_done", cid=cid, **{k: _number(result, k) for k in ("val_ppl", "test_ppl",
                                                                                    "density")})
        self.sync_rounds()

    def _on_reference(self, result: dict) -> None:
        if result.get(REFERENCE_DONE_KEY):
            if not self.log.of_kind("reference_done"):
                self.log.emit("reference_done", val_ppl=_number(result, "val_ppl"),
                              test_ppl=_number(result, "test_ppl"),
                              cached=not self.log.of_kind("reference_epoch"))
        else:
            self._epochs_done += 1
            self.log.emit("reference_epoch", epoch=int(result["epoch"]),
                          epochs=int(result.get(REFERENCE_EPOCHS_KEY, 0)),
                          **{k: _number(result, k) for k in ("val_ppl", "epoch_time_s", "ls_time_s")},
                          **{k: _number(result, k) for k in ("val_loss", "train_loss", *REFERENCE_LS_KEYS)
                             if result.get(k) is not None})
        self.sync_rounds()

    def on_error(self, cid: str, error: str) -> None:
        self.log.emit("trial_error", cid=cid, error=error)
        self.sync_rounds()

    # ------------------------------------------------------------- rounds
    def sync_rounds(self) -> None:
        """Emit a ``round`` event for every round the ledger decided since the last call."""
        pool = self.ledger.pool
        while self._rounds_seen < len(pool.rounds):
            self._emit_round(pool, pool.rounds[self._rounds_seen])
            self._rounds_seen += 1

    def _emit_round(self, pool, decided: dict) -> None:
        r = int(decided["round"])
        ranking = [[cid, float(v)] for cid, v in decided["ranking"]]
        head = ranking[0][0] if ranking else None
        best = None
        if head is not None:
            cand = pool.candidates[head]
            epoch = self._round_epoch(cand, r)
            last = cand.last or {}
            val = self.val_ppl.get((head, epoch), last.get("val_ppl") if last.get("epoch") == epoch else None)
            best = {"cid": head, "value": ranking[0][1], "val_ppl": val, "epoch": epoch}

        def named(cids):
            return [{"cid": c, "config": dict(pool.candidates[c].config)} for c in cids]

        self.log.emit("round", round=r, rounds=len(plan_rounds(pool.config)), pool=len(ranking), ranking=ranking,
                      removed=named(decided["removed"]), refilled=named(decided["generated"]),
                      not_learning=dict(decided.get("not_learning") or {}),
                      generator=self.ledger.meta.get("hpo"), best=best, done=bool(decided["done"]),
                      elapsed_s=self.clock() - self.started, eta_s=self.eta_s())

    @staticmethod
    def _round_epoch(candidate, r: int) -> int | None:
        j = r - int(candidate.born_round)
        return int(candidate.epochs[j]) if 0 <= j < len(candidate.epochs) else None

    def finish(self, summary: dict | None) -> None:
        """Emit ``result`` from the search's summary (``best.json``)."""
        self.sync_rounds()
        best = (summary or {}).get("best")
        keep = ("cid", "config", "val_ppl", "test_ppl", "density")
        self.log.emit("result", best=None if best is None else {k: best.get(k) for k in keep},
                      elapsed_s=self.clock() - self.started)


def progress_for(experiment: Storage | str | os.PathLike, factory: Callable[[], SearchProgress] | None = None
                 ) -> SearchProgress:
    """The process-wide :class:`SearchProgress` of ``experiment``.

    ``factory`` builds (and registers) a new one, replacing any earlier; without it the registered
    one is returned, or a console-less one over the experiment's event log and ledger.
    """
    store = experiment if isinstance(experiment, Storage) else Storage(experiment)
    with _LOCK:
        if factory is not None:
            _REGISTRY[store.uri] = factory()
        elif store.uri not in _REGISTRY:
            from lsh_tune.search._ledger import SearchLedger

            _REGISTRY[store.uri] = SearchProgress(EventLog(store), lambda: SearchLedger.open(store.uri))
        return _REGISTRY[store.uri]
