"""Ray Tune adapters: :class:`LSHScheduler` (synchronous rounds) and :class:`LSHSearcher` (refills).

Both only translate between Tune and the Ray-free :class:`~lsh_tune.search.SearchLedger` they
share, through the ledger's methods only. They act on trials through decisions
(``CONTINUE``/``PAUSE``/``STOP``), by choosing which paused trial runs next
(``choose_trial_to_run``) and through the controller's public ``stop_trial``; nothing writes
trial status or private controller attributes.

Holding trials at a round boundary after ``Tuner.restore``: Tune re-queues restored trials as
PENDING and starts them whatever ``choose_trial_to_run`` says. No private call is needed to hold
them: the candidate trainable re-reports its last boundary result (key :data:`REPLAY_KEY`) right
after restoring, before training further, and the scheduler answers ``PAUSE`` while the round is
open (``CONTINUE``/``STOP`` once decided). The same replay happens on every ordinary unpause.

The dense reference: while the ledger needs it (``SearchLedger.needs_reference``), the searcher's
first suggestion is the trial :data:`REFERENCE_CID`, which trains it with a candidate's resources
and is always continued; round-0 candidates run beside it as resources allow. Their boundaries
pause as usual, and the round stays open (in the ledger) until the reference trial has cached
the reference: its last report (:data:`REFERENCE_DONE_KEY`) or its completion makes the scheduler hand
it to the ledger (``load_reference``), which closes the waiting round. A reference trial that
fails is issued again (it resumes from its newest epoch), ``max_failures`` times.

Result keys the trainable must send (:mod:`lsh_tune.search.keys`; a missing key raises):
:data:`CID_KEY`, ``epoch``, :data:`BOUNDARY_KEY` at round boundaries with the metric
(the signal's ``reported_key``, :mod:`lsh_tune.search.signals`) or, when the ledger ranks with a
pool-wide LS fit, the spectrum
(:data:`LS_KEY`), and :data:`FINAL_KEY` with ``val_ppl``/``test_ppl`` on its last report.
"""
from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Optional

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search.keys import (BOUNDARY_KEY, CID_KEY, FINAL_KEY, FINAL_METRIC_KEYS, LS_EPOCHS_KEY,
                                  LS_FIRST_EPOCH_KEY, LS_KEY, REFERENCE_CID, REFERENCE_DONE_KEY,
                                  REFERENCE_EPOCHS_KEY, ROUND_INFO_KEYS, require)
from lsh_tune.storage import atomic_write_json

if TYPE_CHECKING:  # pragma: no cover
    from ray.tune.execution.tune_controller import TuneController

    from lsh_tune.search._pool import RoundDecision

__all__ = ["LSHScheduler", "LSHSearcher"]

logger = logging.getLogger(__name__)
_DECISIONS = {"continue": TrialScheduler.CONTINUE, "pause": TrialScheduler.PAUSE, "stop": TrialScheduler.STOP}


def tune_will_retry(trial: Trial) -> bool:
    """Whether Tune itself restarts ``trial`` after the error it reports to ``on_trial_error``.

    Tune calls ``TrialScheduler.on_trial_error`` both for a failure it recovers from
    (``TuneController._requeue_trial``: a RUNNING trial with failures left under
    ``FailureConfig(max_failures)``, re-queued as PENDING right after the call) and for one it
    gives up on (``_process_trial_failure``). Only the first finds the trial still RUNNING with
    ``should_recover()``. Tested against Ray's source in ``tests/test_search_adapters.py``.
    """
    return trial.status == Trial.RUNNING and trial.should_recover()


def _cid(trial: Trial) -> str:
    try:
        return str(trial.config[CID_KEY])
    except KeyError:
        raise ValueError(f"trial {trial.trial_id} has no {CID_KEY!r} in its config: LSHScheduler only runs "
                         "trials suggested by LSHSearcher") from None


class LSHScheduler(FIFOScheduler):
    """Synchronous LSH rounds on Tune, like ``HyperBandScheduler``'s bracket barrier.

    A trial that reports a round boundary is paused (its checkpoint kept) until every active
    candidate has reported; then the ledger ranks the pool, the removed trials are stopped, the
    survivors become runnable again and the refill slots go to :class:`LSHSearcher`. Finalists
    run to their end. Works with fewer resources than candidates: trials queue and resume.

    Args:
        ledger: the ledger shared with the searcher.
        max_failures: re-issues of a candidate whose trial Tune gives up on (see
            :meth:`SearchLedger.on_failed`); use the run's ``FailureConfig(max_failures)``.
    """

    def __init__(self, ledger: SearchLedger, *, max_failures: int = 0) -> None:
        super().__init__()
        self.ledger = ledger
        self.max_failures = max_failures
        self._metric_key = ledger.signal.reported_key
        self._trials: dict[str, Trial] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_trials"] = {}
        return state

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        if mode not in (None, "min"):
            raise ValueError(f"LSHScheduler minimises {self._metric_key}; got mode={mode!r}")
        return True

    def on_trial_add(self, tune_controller: "TuneController", trial: Trial) -> None:
        cid = _cid(trial)
        self._trials[cid] = trial
        if cid == REFERENCE_CID and trial.status in (Trial.ERROR, Trial.TERMINATED):
            return  # a restored trial that will not run again: the ledger issues a new one if still needed
        self.ledger.bind(cid)

    def on_trial_result(self, tune_controller: "TuneController", trial: Trial, result: dict) -> str:
        cid = _cid(trial)
        self._trials[cid] = trial
        if cid == REFERENCE_CID:
            self.ledger.on_reference_progress(result.get("epoch"), result.get(REFERENCE_EPOCHS_KEY))
            if result.get(REFERENCE_DONE_KEY):
                self._reference_done(tune_controller)
            return TrialScheduler.CONTINUE
        epoch = int(require(result, "epoch", "every report carries it"))
        if result.get(BOUNDARY_KEY):
            decision = self._on_boundary(cid, epoch, result)
            if decision is not None:
                self._log_decision(decision)
                self._stop_removed(tune_controller, exclude=trial)
        if result.get(FINAL_KEY):
            self.ledger.on_final(cid, {k: result[k] for k in FINAL_METRIC_KEYS if k in result})
        action = self.ledger.action(cid, epoch if result.get(BOUNDARY_KEY) else None)
        return _DECISIONS[action]

    def _on_boundary(self, cid: str, epoch: int, result: dict) -> Optional["RoundDecision"]:
        """Hand a boundary result to the ledger: the spectrum for a pool-wide fit, else the metric."""
        info = {k: result[k] for k in ROUND_INFO_KEYS if k in result}
        if self.ledger.ranks_by_pool_fit:
            spectrum = require(result, LS_KEY, "the pool-wide LS fit ranks every candidate's spectrum")
            first = int(result.get(LS_FIRST_EPOCH_KEY, epoch))
            spectra = dict(zip(range(first, epoch + 1), result.get(LS_EPOCHS_KEY) or []))
            return self.ledger.on_boundary(cid, epoch, None, info, spectrum, spectra)
        value = float(require(result, self._metric_key, f"the metric ranked with --metric {self.ledger.metric_name}"))
        return self.ledger.on_boundary(cid, epoch, value, info)

    def _stop_removed(self, tune_controller: "TuneController", exclude: Optional[Trial]) -> None:
        for cid, trial in sorted(self._trials.items()):
            if trial is exclude or self.ledger.is_alive(cid):
                continue
            if trial.status in (Trial.PAUSED, Trial.PENDING):
                tune_controller.stop_trial(trial)

    def _reference_done(self, tune_controller: "TuneController") -> None:
        """The reference trial has cached the reference: the ledger takes it and closes a waiting round."""
        decision = self.ledger.load_reference()
        if decision is not None:
            self._log_decision(decision)
            self._stop_removed(tune_controller, exclude=None)

    def _log_decision(self, decision: "RoundDecision") -> None:
        logger.info("LSH round %d: ranking %s; removed %s; generated %s; done=%s", decision.round,
                    [(c, round(v, 4) if math.isfinite(v) else v) for c, v in decision.ranking],
                    decision.removed, decision.generated, decision.done)

    def on_trial_error(self, tune_controller: "TuneController", trial: Trial) -> None:
        if tune_will_retry(trial):
            return  # Tune re-queues it; it restarts from its newest state and replays its boundary
        decision = self.ledger.on_failed(_cid(trial), retries=self.max_failures)
        if decision is not None:
            self._stop_removed(tune_controller, exclude=trial)

    def on_trial_complete(self, tune_controller: "TuneController", trial: Trial, result: dict) -> None:
        cid = _cid(trial)
        if cid == REFERENCE_CID:
            self._reference_done(tune_controller)
            if self.ledger.needs_reference:  # ended without caching it
                self.on_trial_error(tune_controller, trial)
            return
        if result and result.get(FINAL_KEY):
            self.ledger.on_final(cid, {k: result[k] for k in FINAL_METRIC_KEYS if k in result})
        elif self.ledger.is_alive(cid):
            logger.warning("candidate %s ended without a final result; dropping it", cid)
            self.on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller: "TuneController", trial: Trial) -> None:
        pass

    def choose_trial_to_run(self, tune_controller: "TuneController") -> Optional[Trial]:
        """The dense reference's trial first, then new candidates (in id order), then paused
        survivors of a decided round.

        Also stops removed candidates that were still being paused when their round was decided
        (Tune marks a trial PAUSED only after its pause completes), so none is left PAUSED forever.
        """
        self._stop_removed(tune_controller, exclude=None)
        trials = sorted(tune_controller.get_trials(),
                        key=lambda t: (t.config.get(CID_KEY) != REFERENCE_CID, str(t.config.get(CID_KEY))))
        for trial in trials:
            if trial.status == Trial.PENDING and self.ledger.is_alive(_cid(trial)):
                return trial
        for trial in trials:
            if trial.status == Trial.PAUSED and self.ledger.is_released(_cid(trial)):
                return trial
        return None

    def debug_string(self) -> str:
        rounds, phase = self.ledger.progress()
        text = f"LSH {self.ledger.metric_name}: round {rounds}, phase {phase}, {self.ledger.status_counts()}"
        waiting = self.ledger.describe_reference()
        if waiting:
            text += f"; {waiting}"
        return text


class LSHSearcher(Searcher):
    """Hands out the ledger's candidates: the initial pool, then each round's refills.

    ``suggest`` returns ``None`` until the scheduler closes a round with refills and
    ``Searcher.FINISHED`` once halving has ended and every live candidate has a trial.
    The refill configs themselves are chosen by the ledger's generator when the round closes,
    conditioned on every (config, metric) observed so far.

    Args:
        ledger: the ledger shared with the scheduler.
    """

    def __init__(self, ledger: SearchLedger) -> None:
        # No metric for Tune: the searcher reads none (the ledger ranks), and Tune rejects every
        # result lacking the searcher's metric — a non-boundary epoch (E > 1), the reference's
        # progress, a round-0 boundary before the reference is trained carry no ls_distance_own_fit.
        super().__init__(metric=None, mode=None)
        self.ledger = ledger

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: dict, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> Optional[dict]:
        nxt = self.ledger.next_to_issue()
        if nxt is not None:
            cid, config = nxt
            return {CID_KEY: cid, **config}
        if self.ledger.issuing_finished():
            return Searcher.FINISHED
        return None

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        """The ledger persists itself; only its location is recorded here (written atomically)."""
        self.ledger.save()
        atomic_write_json({"ledger_directory": self.ledger.directory}, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Re-open the ledger named in ``checkpoint_path``; an unreadable file keeps the ledger this
        searcher was unpickled with (the same directory: Tune pickles the searcher with it)."""
        try:
            with open(checkpoint_path, encoding="utf-8") as f:
                directory = json.load(f)["ledger_directory"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("searcher state %s is unreadable (%s); keeping the ledger %s", checkpoint_path, e,
                           self.ledger.directory)
            return
        if directory is not None:
            self.ledger = SearchLedger.open(directory)
