"""Cache of the dense reference's Lyapunov spectra under a storage root, so a search (or a resume,
or a second search) reuses them.

One ``<key>.npz`` per reference holds ``history`` (E + 1, N): ``history[e]`` is the LS after ``e``
epochs of dense training (``history[0]`` at initialisation), or (0, N) for a reference given as a
checkpoint; ``final`` (N,): the LS of the final dense model; and ``meta``: a JSON string (what
the key was derived from, the final perplexities, anything the caller adds). The key is a SHA-256
prefix of the canonical JSON of (model config, corpus, seed, LS settings, extras such as the
training settings and epochs), so a change to any of them gives a new entry. The root is a
:class:`lsh_tune.storage.Storage` (a directory or an object-store URI); writes are
all-or-nothing there, and an unreadable entry counts as a miss.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lsh_tune.lyapunov.spectrum import LSConfig
from lsh_tune.storage import Storage

__all__ = ["CACHE_VERSION", "ReferenceCache", "ReferenceLS", "reference_key"]

#: 2: ``history`` starts with the spectrum at initialisation (epoch 0).
CACHE_VERSION = 2


@dataclass
class ReferenceLS:
    """A cached reference: ``history`` (E + 1, N) per-epoch spectra from epoch 0, ``final`` (N,), ``meta`` dict."""

    history: np.ndarray
    final: np.ndarray
    meta: dict = field(default_factory=dict)

    def as_history(self) -> list[np.ndarray]:
        """Per-epoch spectra followed by the final one: the ``reference_history`` of ``ls_distances``."""
        return [row for row in self.history] + [self.final]

    def spectra(self) -> np.ndarray:
        """(E', N) spectra the LS space is fitted on: ``history``, or ``final`` alone when there is none."""
        return self.history if len(self.history) else self.final[None, :]


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
    """Cached reference spectra under a storage root, keyed by :func:`reference_key`.

    Args:
        location: a :class:`~lsh_tune.storage.Storage`, a directory or an object-store URI.
    """

    def __init__(self, location: Storage | str | os.PathLike) -> None:
        self.storage = location if isinstance(location, Storage) else Storage(location)

    @property
    def directory(self) -> Path | str:
        """The root: a local :class:`~pathlib.Path`, or the URI of an object-store prefix."""
        return self.storage.local_root if self.storage.is_local else self.storage.uri

    @staticmethod
    def name(key: str) -> str:
        """The entry's name relative to the root."""
        return f"{key}.npz"

    def path(self, key: str) -> Path | str:
        """Where the entry of ``key`` lives (a local path, or its object-store location)."""
        local = self.storage.local_path(self.name(key))
        return local if local is not None else self.storage.uri_of(self.name(key))

    def load(self, key: str) -> ReferenceLS | None:
        """The cached reference, or ``None`` if absent or unreadable (a storage error other than a
        missing entry is raised: a lost connection must not look like a reference to retrain)."""
        try:
            data = self.storage.read_bytes(self.name(key))
        except FileNotFoundError:
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return ReferenceLS(np.array(z["history"]), np.array(z["final"]), json.loads(str(z["meta"])))
        except (ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def save(self, key: str, history, final, meta: dict | None = None) -> Path | str:
        """Write the entry all-or-nothing; returns :meth:`path`."""
        final = np.asarray(final, dtype=np.float64)
        hist = np.asarray(history, dtype=np.float64).reshape(-1, final.shape[0])
        buf = io.BytesIO()
        np.savez(buf, history=hist, final=final, meta=np.array(json.dumps(meta or {}, sort_keys=True)))
        self.storage.write_bytes(self.name(key), buf.getvalue())
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
