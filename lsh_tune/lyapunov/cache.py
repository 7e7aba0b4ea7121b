"""On-disk cache of the dense reference's Lyapunov spectra, so a second search reuses them.

One ``<key>.npz`` file per reference holds ``history`` (E, N): the LS after each epoch of the
dense training, ``final`` (N,): the LS of the final dense model, and ``meta``: a JSON string
(what the key was derived from, plus anything the caller adds). The key is a SHA-256 prefix of
the canonical JSON of (model config, corpus, seed, LS settings), so any change to one of them
gives a new entry. Files are written to a temporary file in the same directory and moved into
place with ``os.replace`` (atomic on POSIX); an unreadable file counts as a miss.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lsh_tune.lyapunov.spectrum import LSConfig

__all__ = ["CACHE_VERSION", "ReferenceCache", "ReferenceLS", "reference_key"]

CACHE_VERSION = 1


@dataclass
class ReferenceLS:
    """A cached reference: ``history`` (E, N) per-epoch spectra, ``final`` (N,), ``meta`` dict."""

    history: np.ndarray
    final: np.ndarray
    meta: dict = field(default_factory=dict)

    def as_history(self) -> list[np.ndarray]:
        """Per-epoch spectra followed by the final one: the ``reference_history`` of ``ls_distances``."""
        return [row for row in self.history] + [self.final]


def _spec_dict(model_spec) -> dict:
    if hasattr(model_spec, "to_dict"):
        return model_spec.to_dict()
    return dict(model_spec)


def reference_key(model_spec, corpus: str, seed: int, config: LSConfig, *, extra: dict | None = None) -> str:
    """Stable key (24 hex chars) of a reference: model config, corpus, seed, LS settings (+ ``extra``).

    ``model_spec`` is a :class:`~lsh_tune.models.ModelSpec` or its ``to_dict()``; ``extra`` can carry
    anything else that changes the reference (training settings, vocabulary size).
    """
    payload = {"version": CACHE_VERSION, "model_spec": _spec_dict(model_spec), "corpus": str(corpus),
               "seed": int(seed), "ls": config.to_dict(), "extra": extra or {}}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class ReferenceCache:
    """Directory of cached reference spectra, keyed by :func:`reference_key`."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> ReferenceLS | None:
        """The cached reference, or ``None`` if absent or unreadable."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return ReferenceLS(np.array(z["history"]), np.array(z["final"]), json.loads(str(z["meta"])))
        except (OSError, ValueError, KeyError):
            return None

    def save(self, key: str, history, final, meta: dict | None = None) -> Path:
        """Write atomically (temp file + ``os.replace``); returns the path."""
        final = np.asarray(final, dtype=np.float64)
        hist = np.asarray(history, dtype=np.float64).reshape(-1, final.shape[0])
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, history=hist, final=final, meta=np.array(json.dumps(meta or {}, sort_keys=True)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(key))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return self.path(key)

    def get_or_compute(self, key: str, compute: Callable[[], tuple], meta: dict | None = None) -> tuple[ReferenceLS, bool]:
        """Cached reference, or ``compute() -> (history, final)`` saved then returned; (ref, was_cached)."""
        hit = self.load(key)
        if hit is not None:
            return hit, True
        history, final = compute()
        self.save(key, history, final, meta)
        loaded = self.load(key)
        return loaded, False
