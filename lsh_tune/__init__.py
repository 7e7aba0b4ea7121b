"""lsh_tune: LS-based hyperpruning (LSH) of recurrent language models on Ray Tune.

``lsh_tune.LSHTuner(...).fit()`` runs the built-in search and returns a ``SearchResult``
(:mod:`lsh_tune.api`); ``lsh_tune.search`` holds the scheduler, searcher and report helpers for a
trainable of your own. The names below are imported on first use, so ``import lsh_tune`` stays light.
"""
from __future__ import annotations

import importlib

_LAZY = {"LSHTuner": "lsh_tune.api", "SearchResult": "lsh_tune.api", "SearchConfig": "lsh_tune.search.config"}
__all__ = ["__version__", *sorted(_LAZY)]


def package_version() -> str:
    """The installed package's version (its metadata); from a checkout that is not installed, the
    ``version`` of its ``pyproject.toml``; ``0+unknown`` when neither can be read."""
    from importlib import metadata

    try:
        return metadata.version("lsh_tune")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        try:
            with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, TypeError, ValueError):  # tomllib.TOMLDecodeError is a ValueError
            return "0+unknown"


def __getattr__(name: str):
    """``__version__`` (:func:`package_version`); ``LSHTuner``, ``SearchResult`` and ``SearchConfig``,
    from their modules on first use."""
    if name == "__version__":
        globals()["__version__"] = version = package_version()
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lsh_tune' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
