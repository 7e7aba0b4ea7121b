"""A lease on one name in a :class:`~lsh_tune.storage.Storage`: one worker at a time trains a shared thing.

Ray-free. Used for the dense reference (:func:`lsh_tune.search.run.reference.train_reference`): two
searches with the same storage path and the same reference key would otherwise both train it.

The lease is a small JSON file (``reference_cache/<key>.lease.json`` for the reference)::

    {"holder": "pid 4242 on node-a", "host": "node-a", "pidns": 4026531836, "pid": 4242,
     "token": "<32 hex>", "created": <Unix s>, "heartbeat": <Unix s>, "timeout_s": 120.0}

* **Acquire** is create-if-absent. Local directory (also NFS): the record is written to a
  temporary file beside the lease, which is then hard-linked to the lease's name; ``link`` fails
  when the name exists, atomically (also on NFS), and a reader never sees a half-written lease
  (a filesystem without hard links: ``os.open(O_CREAT | O_EXCL)``). Object store: pyarrow has no
  portable conditional put, so the lease is written only if absent, then read back after
  ``settle_s`` (1 s) and held only if the token read back is ours. Two takers both win only if
  the second's existence check falls before the first's write lands and its own write lands more
  than ``settle_s`` after the first's read-back; then both train the same (deterministic) thing.
* **Heartbeat.** The holder rewrites the record with a new ``heartbeat`` every ``heartbeat_s``
  (``timeout_s / 4``) from a daemon thread, after checking that the lease is still its own; a
  holder that finds another's token says so once and stops refreshing (it finishes its work,
  which another worker may then be doing too: same result, all writes atomic).
* **Stale** (taken over, and the taker says why): the holder's process is gone (same host and
  PID namespace, PID not running or a zombie), or its heartbeat is older than ``timeout_s``
  (default 120 s; ``LSH_REFERENCE_LEASE_TIMEOUT_S``, read where the work runs, i.e. on the Ray
  workers), or the waiter has seen the same heartbeat for ``timeout_s`` on its own clock (so a
  holder whose clock runs ahead is still found stale). The age rule assumes the hosts' clocks agree
  within ``timeout_s`` (NTP); a reused PID only delays the takeover to the heartbeat rule.
  Takeover: the stale record is read again, deleted if unchanged, then acquired as above; two
  takers of the same stale lease can, in a window of microseconds, both end up training.
* **Release** (on finish and on error): the lease is deleted if it is still ours.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

from lsh_tune.errors import LSHUsageError
from lsh_tune.storage import Storage

__all__ = ["DEFAULT_TIMEOUT_S", "Lease", "TIMEOUT_ENV", "lease_timeout_s"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: Seconds without a heartbeat after which a lease is stale.
DEFAULT_TIMEOUT_S = 120.0
#: The environment variable that overrides :data:`DEFAULT_TIMEOUT_S` (seconds).
TIMEOUT_ENV = "LSH_REFERENCE_LEASE_TIMEOUT_S"
_NOBODY = object()
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


def lease_timeout_s(value: float | None = None) -> float:
    """``value``, else ``$LSH_REFERENCE_LEASE_TIMEOUT_S``, else :data:`DEFAULT_TIMEOUT_S` (seconds, > 0).

    Raises:
        LSHUsageError: not a finite number > 0 (naming where it came from).
    """
    source, raw = ("lease timeout_s", value) if value is not None else (TIMEOUT_ENV, os.environ.get(TIMEOUT_ENV))
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise LSHUsageError(f"{source}={raw!r} must be a number of seconds > 0")
    return seconds


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] in "ZX"
    except (OSError, ValueError, IndexError):
        return False


def _say(line: str) -> None:
    print(line, flush=True)


class Lease:
    """The lease ``name`` in ``store`` (see the module docstring).

    Args:
        store: where the lease lives (beside what it protects).
        name: the lease's file, relative to ``store``.
        what: what it protects, for messages (``"dense reference <key>"``).
        timeout_s: seconds without a heartbeat after which it is stale (``None``: :func:`lease_timeout_s`).
        heartbeat_s: seconds between the holder's heartbeats (default ``timeout_s / 4``).
        poll_s: seconds between a waiter's looks (default ``min(2, timeout_s / 4)``).
        settle_s: object stores only: seconds between writing the lease and reading it back.
        say: where the one-line messages go (waiting, taking over, lost); default: stdout.
    """

    def __init__(self, store: Storage, name: str, *, what: str, timeout_s: float | None = None,
                 heartbeat_s: float | None = None, poll_s: float | None = None, settle_s: float = 1.0,
                 say: Callable[[str], None] | None = None) -> None:
        self.store, self.name, self.what = store, name, what
        self.timeout_s = lease_timeout_s(timeout_s)
        self.heartbeat_s = self.timeout_s / 4 if heartbeat_s is None else float(heartbeat_s)
        self.poll_s = min(2.0, self.timeout_s / 4) if poll_s is None else float(poll_s)
        self.settle_s = float(settle_s)
        self.say = say or _say
        self.host, self.pidns, self.pid = socket.gethostname(), _pid_namespace(), os.getpid()
        self.token = uuid.uuid4().hex
        self.holder = f"pid {self.pid} on {self.host}"
        self.held = False
        self._record: dict | None = None
        self._seen: dict = {}               # {(token, heartbeat) last seen: monotonic s when first seen}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def location(self) -> str:
        return self.store.uri_of(self.name)

    # ------------------------------------------------------------- reading
    def read(self) -> dict | None:
        """The lease's record; ``None`` when there is no lease, ``{}`` when it does not read back."""
        try:
            record = json.loads(self.store.read_bytes(self.name))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return {}
        return record if isinstance(record, dict) else {}

    def stale(self, record: dict) -> str | None:
        """Why the lease ``record`` is stale (a phrase), or ``None`` while its holder counts as alive."""
        now = time.time()
        pid = record.get("pid")
        if (isinstance(pid, int) and record.get("host") == self.host and record.get("pidns") == self.pidns
                and _process_gone(pid)):
            return f"its process {pid} on {self.host} is gone"
        beat = record.get("heartbeat")
        if isinstance(beat, (int, float)) and now - beat > self.timeout_s:
            return f"its heartbeat is {now - beat:.0f} s old (timeout {self.timeout_s:g} s)"
        seen = (record.get("token"), beat)
        if seen not in self._seen:
            self._seen = {seen: time.monotonic()}
        first = self._seen[seen]
        if time.monotonic() - first > self.timeout_s:
            return f"its heartbeat has not changed for {time.monotonic() - first:.0f} s (timeout {self.timeout_s:g} s)"
        return None

    # ----------------------------------------------------------- acquiring
    def try_acquire(self) -> dict | None:
        """Take the lease if it is free or stale: ``None`` when this object holds it now, else the
        record of the live holder (``{}`` for a lease that does not read back)."""
        if self.held:
            return None
        current: dict | None = None
        for _ in range(3):
            record = self._new_record()
            if self._create(record):
                self._hold(record)
                return None
            current = self.read()
            if current is None:
                continue                     # released in between: try again
            why = self.stale(current)
            if why is None:
                return current
            self._remove_if(current)
            record = self._new_record()
            if self._create(record):
                self._hold(record)
                self.say(f"{self.what}: taking over the lease of {current.get('holder', 'an unreadable lease')} "
                         f"({why}); resuming from its newest saved state")
                return None
        return {"holder": "another worker"} if current is None else current   # it kept changing hands

    def wait_for(self, ready: Callable[[], T | None]) -> T | None:
        """Until ``ready()`` returns something or the lease is ours: that something (the lease not
        taken), or ``None`` (the lease held: do the work, then :meth:`release`).

        Says one line per holder it waits for. ``ready`` is asked again after taking the lease, so
        work finished by a holder that released just before is not done twice.
        """
        waited_for: object = _NOBODY
        while True:
            value = ready()
            if value is not None:
                if waited_for is not _NOBODY:
                    logger.info("%s: done elsewhere, taken from %s", self.what, self.store.uri)
                return value
            holder = self.try_acquire()
            if holder is None:
                value = ready()
                if value is not None:
                    self.release()
                return value
            if holder.get("token") != waited_for:
                waited_for = holder.get("token")
                since = holder.get("created")
                since = "" if not isinstance(since, (int, float)) else \
                    f" since {time.strftime('%H:%M:%S', time.localtime(since))}"
                self.say(f"{self.what}: waiting for it, being trained by {holder.get('holder', 'an unreadable lease')}"
                         f"{since} (lease {self.location}); it will be loaded from there when done")
            time.sleep(self.poll_s)

    def _new_record(self) -> dict:
        now = time.time()
        return {"holder": self.holder, "host": self.host, "pidns": self.pidns, "pid": self.pid, "token": self.token,
                "created": now, "heartbeat": now, "timeout_s": self.timeout_s}

    def _create(self, record: dict) -> bool:
        """Write ``record`` as the lease unless one exists; True when it is ours."""
        data = json.dumps(record).encode("utf-8")
        path = self.store.local_path(self.name)
        if path is None:
            if self.store.is_file(self.name):
                return False
            self.store.write_bytes(self.name, data)
            time.sleep(self.settle_s)
            back = self.read()
            return bool(back) and back.get("token") == self.token
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in _NO_LINKS:
                    raise
            try:                             # no hard links on this filesystem
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _remove_if(self, record: dict) -> None:
        """Delete the lease if it still is ``record`` (same token; or still unreadable)."""
        again = self.read()
        if again is not None and again.get("token") == record.get("token"):
            try:
                self.store.delete(self.name)
            except FileNotFoundError:
                pass

    def _hold(self, record: dict) -> None:
        self.held, self._record = True, record
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ holding
    def heartbeat(self) -> bool:
        """Refresh the heartbeat now; False (said once) when the lease is no longer ours."""
        current = self.read()
        if not current or current.get("token") != self.token:
            holder = "nobody" if current is None else current.get("holder", "an unreadable lease")
            self.say(f"{self.what}: lost its lease (now held by {holder}; this worker was thought dead); "
                     "finishing anyway (same result)")
            return False
        self._record = {**self._record, "heartbeat": time.time()}
        self.store.write_json(self.name, self._record, indent=None)
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.heartbeat():
                    return
            except Exception as e:  # a storage hiccup: the next beat tries again
                logger.warning("%s: heartbeat of lease %s failed (%s); next try in %g s", self.what, self.location,
                               e, self.heartbeat_s)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still ours (never raises: a lease left
        behind goes stale by the heartbeat rule)."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.held = False
        try:
            current = self.read()
            if current and current.get("token") == self.token:
                self.store.delete(self.name)
        except Exception as e:
            logger.warning("%s: could not release lease %s (%s); it goes stale after %g s", self.what,
                           self.location, e, self.timeout_s)
