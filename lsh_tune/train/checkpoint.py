"""Atomic ``torch.save`` and device selection (the generic atomic writers are in :mod:`lsh_tune.storage`)."""
from __future__ import annotations

import os

import torch

from lsh_tune.errors import LSHUsageError
from lsh_tune.storage import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["atomic_torch_save", "atomic_write_json", "atomic_write_text", "resolve_device"]


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same directory, then ``os.replace``."""
    atomic_write(path, lambda f: torch.save(obj, f))


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
