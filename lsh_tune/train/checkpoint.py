"""Atomic file writes and device selection."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from lsh_tune.errors import LSHUsageError

__all__ = ["atomic_torch_save", "atomic_write_json", "atomic_write_text", "resolve_device"]


def _atomic(path: Path, write) -> None:
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


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same directory, then ``os.replace``."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


def atomic_write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically."""
    _atomic(Path(path), lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    _atomic(Path(path), lambda f: f.write(text.encode("utf-8")))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → CUDA if this process sees a GPU, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise LSHUsageError(f"device={device!r} is not a valid torch device; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LSHUsageError(f"device={device!r} requested but no CUDA GPU is visible; use auto or cpu")
    return dev
