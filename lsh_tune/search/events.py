"""What happened in a search, as events: their kinds, the experiment's ``events.jsonl``, and who listens.

Ray-free. The driver turns what it sees (trial results, the rounds the ledger decides) into
events (:mod:`lsh_tune.search.progress`); an :class:`EventLog` stamps each one with the wall
clock, appends it to ``<experiment>/events.jsonl`` (through :class:`~lsh_tune.storage.Storage`:
the whole file is rewritten all-or-nothing, so it is never half-written, on object stores too)
and hands it to its listeners (the live console view, :mod:`lsh_tune.search.console`).
``lsh-tune report``, the figures and the TensorBoard log read the file back (:func:`read_events`).

Every event is a JSON object with ``kind``, ``time`` (wall clock, s since the epoch) and the
fields of its kind (perplexities per token, times in seconds):

* ``search_start`` — ``name``, ``hpo``, ``metric``, ``pool``, ``rounds_every``, ``final_k``,
  ``max_epochs``, ``plan`` (``[[n, removed, generated], ...]``, :func:`~lsh_tune.search.plan_rounds`),
  ``slots`` (trials that run at once), ``unigram`` (``{"valid", "test"}`` add-one unigram
  perplexities of the search's slices), ``tokens`` (``[train, valid, test]``), ``resumed``;
* ``reference_epoch`` — ``epoch``, ``epochs``, ``val_ppl``, ``epoch_time_s``, ``ls_time_s``;
* ``reference_done`` — ``val_ppl``, ``test_ppl`` (``cached`` when it came from the cache);
* ``epoch`` — one trained candidate epoch: ``cid``, ``epoch``, ``val_ppl``, ``val_loss``,
  ``density``, ``epoch_time_s``, ``ls_time_s``, ``ls_distance_own_fit`` (boundaries), ``phase``
  (``selection`` or ``final``);
* ``round`` — a closed round: ``round`` (0-based), ``rounds`` (planned), ``pool``, ``ranking``
  (``[[cid, value], ...]`` best first), ``removed`` / ``refilled`` (``[{"cid", "config"}, ...]``),
  ``generator``, ``best`` (``{"cid", "value", "val_ppl"}``, the head of the ranking), ``done``,
  ``elapsed_s``, ``eta_s`` (``None`` before an epoch time is known);
* ``finalist_done`` — ``cid``, ``val_ppl``, ``test_ppl``, ``density``;
* ``trial_error`` — ``cid``, ``error``;
* ``result`` — ``best`` (``{"cid", "config", "val_ppl", "test_ppl", "density"}`` or ``None``),
  ``elapsed_s``.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Iterable

from lsh_tune.errors import LSHUsageError, check_choice
from lsh_tune.storage import Storage

__all__ = ["EVENTS_FILE", "EVENT_KINDS", "EventLog", "read_events"]

#: The event file, relative to the experiment directory.
EVENTS_FILE = "events.jsonl"
EVENT_KINDS = ("search_start", "reference_epoch", "reference_done", "epoch", "round", "finalist_done",
               "trial_error", "result")

Listener = Callable[[dict], None]


def _storage(experiment: Storage | str | os.PathLike) -> Storage:
    return experiment if isinstance(experiment, Storage) else Storage(experiment)


def _plain(value: Any) -> Any:
    """JSON-safe copy: tuples as lists, numpy scalars as floats/ints, non-finite floats kept."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    return float(value)


def read_events(experiment: Storage | str | os.PathLike, kind: str | Iterable[str] | None = None) -> list[dict]:
    """The events of an experiment, oldest first (``[]`` when it has none), optionally of some kinds only.

    Raises:
        LSHUsageError: ``kind`` names an unknown kind, or a line of the file is not JSON.
    """
    kinds = None if kind is None else ({kind} if isinstance(kind, str) else set(kind))
    for k in kinds or ():
        check_choice("kind", k, EVENT_KINDS)
    store = _storage(experiment)
    if not store.is_file(EVENTS_FILE):
        return []
    out = []
    for n, line in enumerate(store.read_text(EVENTS_FILE).splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as e:
            raise LSHUsageError(f"{store.uri_of(EVENTS_FILE)} line {n} is not JSON ({e})") from None
        if kinds is None or event.get("kind") in kinds:
            out.append(event)
    return out


class EventLog:
    """The events of one experiment: kept in memory, persisted on every :meth:`emit`, passed to listeners.

    Opening the log of an experiment that already has events (a resumed search) keeps them.

    Args:
        experiment: the experiment's storage (a :class:`Storage`, a directory or a URI); ``None``
            keeps the events in memory only.
        listeners: callables ``listener(event)`` called after each event is persisted.
        clock: wall clock (tests).
    """

    def __init__(self, experiment: Storage | str | os.PathLike | None, listeners: Iterable[Listener] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = None if experiment is None else _storage(experiment)
        self.listeners: list[Listener] = list(listeners)
        self.clock = clock
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self.events: list[dict] = []
        if self.storage is not None:
            self.events = read_events(self.storage)
            self._lines = [json.dumps(e) for e in self.events]

    def emit(self, kind: str, **fields: Any) -> dict:
        """Record one event of ``kind`` (see the module docstring) and return it.

        Raises:
            LSHUsageError: an unknown kind.
        """
        check_choice("kind", kind, EVENT_KINDS)
        event = {"kind": kind, "time": float(self.clock()), **_plain(fields)}
        with self._lock:
            self.events.append(event)
            self._lines.append(json.dumps(event))
            if self.storage is not None:
                self.storage.write_text(EVENTS_FILE, "\n".join(self._lines) + "\n")
        for listener in self.listeners:
            listener(event)
        return event

    def of_kind(self, kind: str) -> list[dict]:
        """The events of ``kind`` so far, oldest first."""
        return [e for e in self.events if e["kind"] == kind]

    def first_time(self) -> float | None:
        """Wall clock of the first event (the search's start), ``None`` when there is none."""
        return self.events[0]["time"] if self.events else None

