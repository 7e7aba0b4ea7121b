"""What happened in a search, as events: their kinds, the experiment's ``events.jsonl``, and who listens.

Ray-free. The driver turns what it sees (trial results, the rounds the ledger decides) into
events (:mod:`lsh_tune.search.views.progress`); an :class:`EventLog` stamps each one with the wall
clock, appends it to ``<experiment>/events.jsonl`` and hands it to its listeners (the live
console view, :mod:`lsh_tune.search.views.console`). ``lsh-tune report``, the figures and the
TensorBoard log read the file back (:func:`read_events`, :func:`read_event_file`).

Writing costs each event its own bytes, never the whole file again:

* a local root (disk, NFS): one ``write`` of the event's line on an ``O_APPEND`` descriptor, then
  ``fsync`` (:meth:`Storage.append_bytes <lsh_tune.storage.Storage.append_bytes>`). A kill inside
  that write can leave a torn last line (no newline, not JSON): readers skip it and report it
  (:attr:`EventFile.torn_bytes`, a :class:`TornEventsWarning`), and the next :class:`EventLog` of
  the experiment (a resume) cuts it off before appending;
* an object store (``s3://``…, which cannot append): the events are kept in memory and the whole
  file is uploaded all-or-nothing at most every :data:`OBJECT_STORE_FLUSH_S` seconds, at once
  after the events of :data:`FLUSH_AT_ONCE` (a round closing, a finalist, an error, the result,
  what the live TensorBoard rebuild reads) and on :meth:`EventLog.close`. A killed driver loses
  at most the last :data:`OBJECT_STORE_FLUSH_S` seconds of ``epoch``/``reference_epoch`` events
  there (the search itself resumes from its ledger, not from this file).

Every event is a JSON object with ``kind``, ``time`` (wall clock, s since the epoch) and the
fields of its kind (perplexities per token, times in seconds):

* ``search_start`` — ``name``, ``hpo``, ``metric`` (the ranking signal's name), ``signal`` (what it
  ranks, with its settings) and ``signal_label`` (its short name), ``untrained_ppl`` (above it a
  candidate is not learning; ``None``: no such test), ``pool``, ``rounds_every``, ``final_k``,
  ``max_epochs``, ``plan`` (``[[n, removed, generated], ...]``, :func:`~lsh_tune.search.plan_rounds`),
  ``slots`` (trials that run at once), ``unigram`` (``{"valid", "test"}`` add-one unigram
  perplexities of the search's slices), ``tokens`` (``[train, valid, test]``), ``resumed``;
* ``reference_epoch`` — ``epoch``, ``epochs``, ``val_ppl``, ``val_loss``, ``train_loss``, ``epoch_time_s``,
  ``ls_time_s``, and its spectrum's ``ls_max``, ``ls_mean``, ``ls_variance``, ``ls_neg_inf``
  (:data:`~lsh_tune.search.keys.REFERENCE_LS_KEYS`);
* ``reference_done`` — ``val_ppl``, ``test_ppl`` (``cached`` when it came from the cache);
* ``epoch`` — one trained candidate epoch: ``cid``, ``epoch``, ``val_ppl``, ``val_loss``,
  ``density``, ``epoch_time_s``, ``ls_time_s``, ``ls_distance_own_fit`` (boundaries), ``phase``
  (``selection`` or ``final``);
* ``round`` — a closed round: ``round`` (0-based), ``rounds`` (planned), ``pool``, ``ranking``
  (``[[cid, value], ...]`` best first), ``removed`` / ``refilled`` (``[{"cid", "config"}, ...]``),
  ``not_learning`` (``{cid: why}``: the candidates ranked behind every learning one, e.g.
  ``"val ppl 1.3e7 > 10,000 at initialisation"``, :func:`lsh_tune.search.signals.not_learning`),
  ``generator``, ``best`` (``{"cid", "value", "val_ppl"}``, the head of the ranking), ``done``,
  ``elapsed_s``, ``eta_s`` (``None`` before an epoch time is known);
* ``finalist_done`` — ``cid``, ``val_ppl``, ``test_ppl``, ``density``;
* ``trial_error`` — ``cid``, ``error``;
* ``result`` — ``best`` (``{"cid", "config", "val_ppl", "test_ppl", "density"}`` or ``None``),
  ``elapsed_s``.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from lsh_tune.errors import LSHUsageError, check_choice
from lsh_tune.search.layout import EVENTS_FILE
from lsh_tune.storage import Storage

__all__ = ["EVENTS_FILE", "EVENT_KINDS", "FLUSH_AT_ONCE", "OBJECT_STORE_FLUSH_S", "EventFile", "EventLog",
           "TornEventsWarning", "read_event_file", "read_events"]

logger = logging.getLogger(__name__)

EVENT_KINDS = ("search_start", "reference_epoch", "reference_done", "epoch", "round", "finalist_done",
               "trial_error", "result")
#: On an object store, seconds between two uploads of the event file (see the module docstring):
#: an upload rewrites the whole object, so this bounds their number by time, not by events.
OBJECT_STORE_FLUSH_S = 30.0
#: Kinds whose event is uploaded at once on an object store (rare, and read back while the search runs).
FLUSH_AT_ONCE = ("search_start", "reference_done", "round", "finalist_done", "trial_error", "result")

Listener = Callable[[dict], None]


class TornEventsWarning(UserWarning):
    """The event file ends in a torn line (a write cut by a kill, or one still in progress): it was skipped."""


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


@dataclass(frozen=True)
class EventFile:
    """An experiment's event file as read back.

    Attributes:
        events: every complete event, oldest first.
        torn_bytes: the size of the torn last line that was skipped (0: the file ends cleanly). Only
            the *last* line may be torn (an append cut short); a bad line before it is an error.
        location: where the file is (for messages).
        complete_bytes: the length of the file up to the end of its last complete line (the part to keep).
        ends_with_newline: whether the file is empty or ends with a newline (a complete last event
            whose newline is missing is kept, but the next append must start a new line).
    """

    events: list[dict]
    torn_bytes: int = 0
    location: str = ""
    complete_bytes: int = 0
    ends_with_newline: bool = True

    @property
    def warning(self) -> str | None:
        """One line saying what was skipped, for the caller to show (``None`` when nothing was)."""
        if not self.torn_bytes:
            return None
        return (f"{self.location}: skipped a torn last line ({self.torn_bytes} bytes, not a whole event): an append "
                f"cut short by a kill, or one still being written; the {len(self.events)} events before it are read")


def _parse(data: bytes, where: str) -> EventFile:
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    events = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            events.append(_event(line, where, n))
    if tail.strip():
        try:  # a complete event whose newline is missing is kept; a prefix of one is never JSON
            events.append(_event(tail, where, len(lines) + 1))
        except LSHUsageError:
            return EventFile(events, len(tail), where, len(data) - len(tail))
    return EventFile(events, 0, where, len(data), not tail)


def _event(line: bytes, where: str, n: int) -> dict:
    try:
        event = json.loads(line)
    except ValueError as e:  # UnicodeDecodeError included
        raise LSHUsageError(f"{where} line {n} is not JSON ({e})") from None
    if not isinstance(event, dict):
        raise LSHUsageError(f"{where} line {n} is not an event (a JSON object): {line[:80]!r}")
    return event


def read_event_file(experiment: Storage | str | os.PathLike) -> EventFile:
    """The experiment's event file: its complete events and what was skipped (see :class:`EventFile`);
    no events when there is no file.

    Raises:
        LSHUsageError: a line other than the last is not a JSON object (a damaged file).
    """
    store = _storage(experiment)
    where = store.uri_of(EVENTS_FILE)
    if not store.is_file(EVENTS_FILE):
        return EventFile([], 0, where)
    return _parse(store.read_bytes(EVENTS_FILE), where)


def read_events(experiment: Storage | str | os.PathLike, kind: str | Iterable[str] | None = None) -> list[dict]:
    """The events of an experiment, oldest first (``[]`` when it has none), optionally of some kinds only.

    A torn last line (:class:`EventFile`) is skipped with a :class:`TornEventsWarning` naming the file
    and its size; :func:`read_event_file` returns it to the caller instead.

    Raises:
        LSHUsageError: ``kind`` names an unknown kind, or a line before the last is not JSON.
    """
    kinds = None if kind is None else ({kind} if isinstance(kind, str) else set(kind))
    for k in kinds or ():
        check_choice("kind", k, EVENT_KINDS)
    read = read_event_file(experiment)
    if read.warning:
        warnings.warn(read.warning, TornEventsWarning, stacklevel=2)
    return [e for e in read.events if kinds is None or e.get("kind") in kinds]


class EventLog:
    """The events of one experiment: kept in memory, persisted on :meth:`emit`, passed to listeners.

    Opening the log of an experiment that already has events (a resumed search) keeps them; a torn
    last line left by a killed driver is logged as a warning and cut off first. On a local root
    every event is appended at once; on an object store see the module docstring (uploads batched
    by :data:`OBJECT_STORE_FLUSH_S`, :meth:`close` uploads the rest).

    Args:
        experiment: the experiment's storage (a :class:`Storage`, a directory or a URI); ``None``
            keeps the events in memory only.
        listeners: callables ``listener(event)`` called after each event is persisted (on an object
            store: after it is uploaded, or queued for the next upload).
        clock: wall clock (tests); it also times the object-store uploads.
        flush_every_s: seconds between uploads on an object store (:data:`OBJECT_STORE_FLUSH_S`).
    """

    def __init__(self, experiment: Storage | str | os.PathLike | None, listeners: Iterable[Listener] = (),
                 clock: Callable[[], float] = time.time, *, flush_every_s: float = OBJECT_STORE_FLUSH_S) -> None:
        self.storage = None if experiment is None else _storage(experiment)
        self.listeners: list[Listener] = list(listeners)
        self.clock = clock
        self.flush_every_s = float(flush_every_s)
        self._lock = threading.Lock()
        self._lines: list[str] = []  # object store: the file's lines, uploaded whole
        self._unsaved = 0            # object store: events not uploaded yet
        self._flushed_at = clock()
        self.events: list[dict] = []
        if self.storage is None:
            return
        read = read_event_file(self.storage)
        self.events = list(read.events)
        if self.storage.is_local:
            self._repair(read)
        else:
            self._lines = [json.dumps(e) + "\n" for e in self.events]
            if read.torn_bytes:  # not written by an EventLog (its uploads are whole): the next upload drops it
                logger.warning("%s; the next upload drops it", read.warning)
                self._unsaved = 1
            atexit.register(self._close_at_exit)  # what is still in memory when the driver exits normally

    def _repair(self, read: EventFile) -> None:
        """A local file that does not end at a complete line is made to, before anything is appended:
        a torn tail is cut off (rewritten all-or-nothing), a missing final newline is added."""
        if read.torn_bytes:
            logger.warning("%s; cutting it off before appending", read.warning)
            data = self.storage.read_bytes(EVENTS_FILE)[:read.complete_bytes]
            self.storage.write_bytes(EVENTS_FILE, data)
        elif not read.ends_with_newline:
            self.storage.append_bytes(EVENTS_FILE, b"\n")

    def emit(self, kind: str, **fields: Any) -> dict:
        """Record one event of ``kind`` (see the module docstring) and return it.

        Raises:
            LSHUsageError: an unknown kind.
            LSHStorageError: the event file cannot be written (the file is left as it was).
        """
        check_choice("kind", kind, EVENT_KINDS)
        event = {"kind": kind, "time": float(self.clock()), **_plain(fields)}
        line = json.dumps(event) + "\n"
        with self._lock:
            self.events.append(event)
            if self.storage is not None and self.storage.is_local:
                self.storage.append_bytes(EVENTS_FILE, line.encode("utf-8"))
            elif self.storage is not None:
                self._lines.append(line)
                self._unsaved += 1
                if kind in FLUSH_AT_ONCE or self.clock() - self._flushed_at >= self.flush_every_s:
                    self._upload()
        for listener in self.listeners:
            listener(event)
        return event

    def _upload(self) -> None:
        """The whole file, all-or-nothing (object store; the caller holds the lock)."""
        self.storage.write_bytes(EVENTS_FILE, "".join(self._lines).encode("utf-8"))
        self._unsaved = 0
        self._flushed_at = self.clock()

    def flush(self) -> None:
        """Persist every event emitted so far now (only an object store ever has any left to upload)."""
        with self._lock:
            if self.storage is not None and not self.storage.is_local and self._unsaved:
                self._upload()

    def close(self) -> None:
        """:meth:`flush`; the log stays usable (a later :meth:`emit` persists as before)."""
        self.flush()

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at exit nothing can be done about it but say so
            logger.warning("could not upload the last events to %s", self.storage.uri_of(EVENTS_FILE), exc_info=True)

    def of_kind(self, kind: str) -> list[dict]:
        """The events of ``kind`` so far, oldest first."""
        return [e for e in self.events if e["kind"] == kind]

    def first_time(self) -> float | None:
        """Wall clock of the first event (the search's start), ``None`` when there is none."""
        return self.events[0]["time"] if self.events else None

