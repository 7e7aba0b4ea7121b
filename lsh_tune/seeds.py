"""Reproducible seeds: one 31-bit integer per (seed, purpose, ...) tuple.

Ground floor: imports nothing from ``lsh_tune``. ``zlib.crc32`` over the ``:``-joined parts, never the
built-in ``hash()`` (salted per process).

>>> derive_seed(0, "c000") == derive_seed(0, "c000")
True
"""
from __future__ import annotations

import zlib

__all__ = ["derive_seed"]


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from ``parts`` (``str`` of each, joined by ``:``), stable across processes."""
    return zlib.crc32(":".join(map(str, parts)).encode()) & 0x7FFFFFFF
