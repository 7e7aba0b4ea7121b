"""Atomic ``torch.save``, reading a checkpoint back, and device selection (the generic atomic writers are in
:mod:`lsh_tune.storage`)."""
from __future__ import annotations

import os
import pickle
import zipfile

import torch

from lsh_tune.errors import LSHUsageError
from lsh_tune.storage import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["atomic_torch_save", "atomic_write_json", "atomic_write_text", "read_checkpoint", "resolve_device"]

#: What a corrupt, truncated or foreign ``torch.load`` input raises (besides ``OSError``).
_UNREADABLE = (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, AttributeError,
               ImportError, IndexError, KeyError, TypeError, UnicodeDecodeError)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same directory, then ``os.replace``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def read_checkpoint(path: str | os.PathLike, *, required: tuple[str, ...] = (),
                    map_location: str | torch.device = "cpu") -> dict:
    """The dict ``torch.save``-d in ``path`` by lsh_tune (it must hold the keys ``required``).

    Raises:
        LSHUsageError: ``path`` is missing, unreadable, corrupt or truncated, not a dict, or lacks a
            ``required`` key — one line naming the file.
    """
    if not os.path.isfile(path):
        raise LSHUsageError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, *_UNREADABLE) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise LSHUsageError(f"cannot read checkpoint {str(path)!r} (corrupt, truncated or not a torch file): "
                            f"{reason}") from None
    if not isinstance(ckpt, dict):
        raise LSHUsageError(f"checkpoint {str(path)!r} holds a {type(ckpt).__name__}, not an lsh_tune checkpoint")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise LSHUsageError(f"checkpoint {str(path)!r} lacks keys {missing}: not an lsh_tune checkpoint of "
                            f"this kind (needs {list(required)})")
    return ckpt


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
