"""LS-based hyperpruning search: the Ray-free core, what a run and a person see of it, and its Ray Tune adapters.

One folder per layer, each importing only from the ones before it (``docs/architecture.md``):

* ``lsh_tune.search`` (this package's modules) — the Ray-free core: the pool, ledger, refill
  generators, ranking signals (:mod:`.signals`) and LS fit, the result keys (:mod:`.keys`), every
  file name of an experiment (:mod:`.layout`), the config and its checks (:mod:`.config`),
  candidates (:mod:`.candidate`), GPU packing, Ray addresses, and what a trainable of your own
  reports (:mod:`.own_trainable`);
* :mod:`lsh_tune.search.run` — Ray-free parts of a run: the checks before it (preflight, the cost
  model), the dense reference, the outputs;
* :mod:`lsh_tune.search.views` — what a person sees: events, progress, the live console, reports,
  figures, TensorBoard (Ray-free);
* :mod:`lsh_tune.search.tune` — everything that imports Ray: :class:`LSHScheduler`,
  :class:`LSHSearcher`, the candidate trainable, the loggers and :func:`run_search`. Those names are
  imported from here lazily, so that the core works without Ray.
"""
from __future__ import annotations

from lsh_tune.search._generators import HPO_METHODS, RefillGenerator, make_generator
from lsh_tune.search._ledger import STATE_FILE, SearchLedger
from lsh_tune.search._ls_fit import LSSpace, PoolLSFit
from lsh_tune.search._pool import (ACTIVE, FAILED, FINAL, FINISHED, RANKING_METRICS, REMOVED, Candidate,
                                   CandidatePool, PoolConfig, RoundDecision, plan_rounds, plan_schedule)
from lsh_tune.search.candidate import TrialSettings, build_candidate
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.own_trainable import candidate_metrics, is_boundary, make_ledger, replay_metrics
from lsh_tune.search.signals import SIGNALS, RankingSignal, register_signal

__all__ = ["ACTIVE", "FAILED", "FINAL", "FINISHED", "HPO_METHODS", "RANKING_METRICS", "REMOVED", "STATE_FILE",
           "Candidate", "CandidatePool", "LSSpace", "PoolConfig", "PoolLSFit", "RefillGenerator", "RoundDecision",
           "SearchConfig", "SearchLedger", "TrialSettings", "build_candidate", "make_generator", "plan_rounds",
           "plan_schedule", "candidate_metrics", "is_boundary", "make_ledger", "replay_metrics",
           "SIGNALS", "RankingSignal", "register_signal"]

_LAZY = {"LSHScheduler": "lsh_tune.search.tune.adapters", "LSHSearcher": "lsh_tune.search.tune.adapters",
         "candidate_trainable": "lsh_tune.search.tune.trainable", "run_search": "lsh_tune.search.tune.tuner",
         "result_logger_callbacks": "lsh_tune.search.tune.loggers"}
__all__ += sorted(_LAZY)


def __getattr__(name: str):
    """Ray-dependent names are imported on first use (the core above works without Ray)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lsh_tune.search' has no attribute {name!r}")
