"""Atomic file writes: the one place lsh_tune replaces a file.

Ground floor: standard library only, imports nothing from ``lsh_tune``. Every writer goes to a
temporary file in the target's directory, is flushed and fsynced, then ``os.replace``-d over the
target, so a reader (or a resume after a kill at any instant) sees the old or the new version,
never a half-written one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a binary temp file beside ``path``, then atomically replace ``path``.

    Missing parent directories are created. On any exception the temp file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(obj: Any, path: str | os.PathLike, **dumps_kwargs: Any) -> None:
    """Write ``obj`` as JSON atomically (default: ``indent=2, sort_keys=True``)."""
    kwargs = {"indent": 2, "sort_keys": True, **dumps_kwargs}
    atomic_write_text(path, json.dumps(obj, **kwargs))
