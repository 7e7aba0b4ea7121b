"""LS-based hyperpruning search: the Ray-free pool/ledger core and its Ray Tune adapters.

The Ray adapters (:class:`LSHScheduler`, :class:`LSHSearcher`, the candidate trainable and the
runner) are imported lazily so that the core works without Ray.
"""
from lsh_tune.search._generators import HPO_METHODS, RefillGenerator, make_generator
from lsh_tune.seeds import derive_seed
from lsh_tune.search._ledger import STATE_FILE, SearchLedger
from lsh_tune.storage import atomic_write_text
from lsh_tune.search._pool import (ACTIVE, FAILED, FINAL, FINISHED, REMOVED, Candidate, CandidatePool,
                                   PoolConfig, RoundDecision, plan_rounds)

__all__ = ["ACTIVE", "FAILED", "FINAL", "FINISHED", "HPO_METHODS", "REMOVED", "STATE_FILE", "Candidate",
           "CandidatePool", "PoolConfig", "RefillGenerator", "RoundDecision", "SearchLedger",
           "atomic_write_text", "derive_seed", "make_generator", "plan_rounds"]

_LAZY = {"LSHScheduler": "lsh_tune.search._ray", "LSHSearcher": "lsh_tune.search._ray",
         "candidate_trainable": "lsh_tune.search._trainable", "TrialSettings": "lsh_tune.search._trainable",
         "SearchConfig": "lsh_tune.search.config", "run_search": "lsh_tune.search.runner"}
__all__ += sorted(_LAZY)


def __getattr__(name: str):
    """Ray-dependent names are imported on first use (the core above works without Ray)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lsh_tune.search' has no attribute {name!r}")
