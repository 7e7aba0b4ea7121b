"""What Ray itself prints during a search, by ``--verbose`` level (the live view is :mod:`lsh_tune.search.views.console`).

0 and 1 (default): nothing of Ray's own — no Tune reporter (per-trial config boxes, status tables,
the experiment banner), no "Experiment state snapshotting has been triggered multiple times"
warnings, no INFO logs of the driver ("Started a local Ray instance") or of the workers
("Checkpoint successfully created at …", "Restored on … from checkpoint"); warnings, errors,
"… may be a performance bottleneck" below 60 s; workers' prints and tracebacks still come through. 2: Tune's reporter and Ray's INFO logs are
back. 3: Tune's most detailed reporter. Public switches only: ``RunConfig(verbose=…)``,
``ray.init(logging_level=…, logging_config=ray.LoggingConfig(…))`` and Tune's documented
environment variables.
"""
from __future__ import annotations

import logging
import os
import sys

from lsh_tune.search._checks import VERBOSITY

__all__ = ["VERBOSITY", "quiet_sigterm_in_gc", "ray_init_kwargs", "tune_verbosity", "quiet_tune"]
#: Tune's environment switch for its "Experiment state snapshotting has been triggered multiple times" warning.
_SNAPSHOT_WARNING_ENV = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"
#: Tune's switch between its new output engine (``1``, the default) and the legacy one (``0``).
_NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"
#: Tune's threshold (s) above which a step of its loop is reported as "… may be a performance bottleneck"
#: (read when ``ray.tune`` is first imported); a round's close (refill generation, the pool-wide fit) can take
#: seconds on a busy machine, which is not worth a warning in the live view.
_SLOW_WARNING_ENV = "TUNE_WARN_THRESHOLD_S"
_SLOW_WARNING_S = "60"


def tune_verbosity(verbose: int) -> int:
    """``RunConfig(verbose=…)`` for our ``verbose``: Tune's reporter only from 2 on."""
    return {0: 0, 1: 0, 2: 1}.get(int(verbose), 2)


def ray_init_kwargs(verbose: int) -> dict:
    """``ray.init`` keyword arguments: below 2, Ray's driver and its workers log warnings and errors only
    (drops "Started a local Ray instance", the workers' "Checkpoint successfully created" / "Restored
    on … from checkpoint" lines); workers' prints and tracebacks still reach the terminal."""
    if verbose >= 2:
        return {}
    import ray

    return {"logging_level": logging.WARNING, "logging_config": ray.LoggingConfig(log_level="WARNING")}


def quiet_tune(verbose: int) -> None:
    """Below verbosity 2: Tune's legacy output engine (``RAY_AIR_NEW_OUTPUT=0``; the new one prints its
    experiment banner whatever the verbosity, the legacy one prints nothing at verbosity 0), no
    snapshot-frequency warning, and "performance bottleneck" warnings only past 60 s (Tune's documented
    variables; call it before ``ray.tune`` is imported). Values already in the environment win."""
    if verbose < 2:
        os.environ.setdefault(_NEW_OUTPUT_ENV, "0")
        os.environ.setdefault(_SNAPSHOT_WARNING_ENV, "0")
        os.environ.setdefault(_SLOW_WARNING_ENV, _SLOW_WARNING_S)


def _drop_lost_sigterm_exit(unraisable, default=sys.__unraisablehook__) -> None:
    """``sys.unraisablehook`` of a trial worker: a ``SystemExit`` that Ray's SIGTERM handler raised
    inside a garbage-collection callback is dropped silently; anything else goes to ``default``."""
    if isinstance(unraisable.exc_value, SystemExit):
        return
    default(unraisable)


def quiet_sigterm_in_gc() -> None:
    """In a trial's worker process: no "Exception ignored in: <function WeakSet…>" traceback when Tune
    stops the actor. Ray's worker SIGTERM handler raises ``SystemExit``; when the signal lands while
    the collector runs a weakref callback, Python cannot raise it there and prints it as unraisable
    (8 lines, forwarded to the user's terminal). Python drops it either way and Ray's follow-up kill
    ends the worker, so only the printing changes; other unraisable exceptions still print."""
    sys.unraisablehook = _drop_lost_sigterm_exit
