"""lsh_tune: LS-based hyperpruning (LSH) of recurrent language models on Ray Tune.

``lsh_tune.LSHTuner(...).fit()`` runs the built-in search and returns a ``SearchResult``
(:mod:`lsh_tune.api`); ``lsh_tune.search`` holds the scheduler, searcher and report helpers for a
trainable of your own. The names below are imported on first use, so ``import lsh_tune`` stays light.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {"LSHTuner": "lsh_tune.api", "SearchResult": "lsh_tune.api", "SearchConfig": "lsh_tune.search.config"}
__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    """``LSHTuner``, ``SearchResult`` and ``SearchConfig``, from their modules on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lsh_tune' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
