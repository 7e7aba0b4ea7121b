"""The Tune callback that feeds a search's results to its :class:`~lsh_tune.search.views.progress.SearchProgress`.

Public Tune API only (``ray.tune.Callback``): ``on_trial_result`` runs after the scheduler has seen
the result (so a round it closed is already in the ledger), ``on_step_end`` after every
controller step, ``on_trial_error`` when a trial fails. Tune pickles its callbacks with the
experiment (``tuner.pkl``) and unpickles them on ``Tuner.restore``: this one pickles only the
experiment's location and finds that experiment's progress object again in the driver
(:func:`~lsh_tune.search.views.progress.progress_for`).
"""
from __future__ import annotations

from ray.tune import Callback

from lsh_tune.search.keys import CID_KEY
from lsh_tune.search.views.progress import SearchProgress, progress_for

__all__ = ["SearchEventsCallback"]


class SearchEventsCallback(Callback):
    """Trial results → search events (see the module docstring).

    Args:
        experiment: the experiment's location (directory or URI), the key of its progress object.
    """

    def __init__(self, experiment: str) -> None:
        self.experiment = str(experiment)

    def __reduce__(self):
        return (SearchEventsCallback, (self.experiment,))

    @property
    def progress(self) -> SearchProgress:
        return progress_for(self.experiment)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.progress.on_result(result)

    def on_step_end(self, iteration, trials, **info) -> None:
        self.progress.sync_rounds()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = getattr(trial, "error_file", None) or "see Tune's trial logs"
        self.progress.on_error(str(trial.config.get(CID_KEY, trial.trial_id)), f"error in {error}")
