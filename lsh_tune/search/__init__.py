"""LS-based hyperpruning search: the Ray-free pool/ledger core and its Ray Tune adapters.

Ray-free: the pool, ledger, generators, LS fit, result keys (:mod:`.keys`), the config
(:mod:`.config`), candidates (:mod:`.candidate`), the shared inputs (:mod:`.reference`) and
the outputs (:mod:`.outputs`). The Ray adapters (:class:`LSHScheduler`, :class:`LSHSearcher`,
the candidate trainable and :func:`run_search`, :mod:`.tuner`) are imported lazily so that the
core works without Ray.
"""
from __future__ import annotations

from lsh_tune.search._generators import HPO_METHODS, RefillGenerator, make_generator
from lsh_tune.search._ledger import STATE_FILE, SearchLedger
from lsh_tune.search._ls_fit import LSSpace, PoolLSFit
from lsh_tune.search._pool import (ACTIVE, FAILED, FINAL, FINISHED, RANKING_METRICS, REMOVED, Candidate,
                                   CandidatePool, PoolConfig, RoundDecision, plan_rounds, plan_schedule)
from lsh_tune.search.candidate import TrialSettings, build_candidate
from lsh_tune.search.config import SearchConfig
from lsh_tune.search._own_trainable import candidate_metrics, is_boundary, make_ledger, replay_metrics

__all__ = ["ACTIVE", "FAILED", "FINAL", "FINISHED", "HPO_METHODS", "RANKING_METRICS", "REMOVED", "STATE_FILE",
           "Candidate", "CandidatePool", "LSSpace", "PoolConfig", "PoolLSFit", "RefillGenerator", "RoundDecision",
           "SearchConfig", "SearchLedger", "TrialSettings", "build_candidate", "make_generator", "plan_rounds",
           "plan_schedule", "candidate_metrics", "is_boundary", "make_ledger", "replay_metrics"]

_LAZY = {"LSHScheduler": "lsh_tune.search._ray", "LSHSearcher": "lsh_tune.search._ray",
         "candidate_trainable": "lsh_tune.search._trainable", "run_search": "lsh_tune.search.tuner",
         "result_logger_callbacks": "lsh_tune.search._loggers"}
__all__ += sorted(_LAZY)


def __getattr__(name: str):
    """Ray-dependent names are imported on first use (the core above works without Ray)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lsh_tune.search' has no attribute {name!r}")
