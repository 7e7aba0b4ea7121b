"""Tune's JSON/CSV result loggers without the loss of rows when a paused trial resumes.

Ray issue worked around (Ray 2.60, ``ray/tune/logger/logger.py``): ``LoggerCallback`` copies a
trial's ``result.json`` / ``progress.csv`` back from the storage path *every* time a trial with a
checkpoint starts, the unpause of a PAUSED trial in the same driver included (the download was
added by ray-project/ray#38598 for resuming experiments). The storage copy is only as recent as the
driver's last experiment sync, so the rows a trial reported since that sync are overwritten. LSH
pauses every candidate at every round boundary, so this lost whole rounds of ``result.json`` in
about one search out of three (``tests/test_search_ray.py`` caught it).

:func:`result_logger_callbacks` returns subclasses that download a trial's file on its first start
in this driver process only (a restored experiment: the driver's staging copy is empty) and keep
the local file, which is the newest one, on every later start. Passing them in
``RunConfig(callbacks=...)`` replaces Tune's default JSON/CSV loggers; the TensorBoard logger is
still added by Tune. The private method overridden is ``_restore_from_remote(file_name, trial)``;
``tests/test_search_loggers.py`` breaks if Ray renames it or stops calling it from
``log_trial_start``.
"""
from __future__ import annotations

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

__all__ = ["SessionJsonLoggerCallback", "SessionCSVLoggerCallback", "result_logger_callbacks"]


class _DownloadOncePerSession:
    """Mixin: the storage copy of a trial's result file is fetched on its first start only."""

    def __init__(self) -> None:
        super().__init__()
        self._downloaded: set[tuple[str, str]] = set()

    def _restore_from_remote(self, file_name: str, trial) -> None:
        key = (file_name, trial.trial_id)
        if key in self._downloaded:
            return  # a later start in this session: the local file already holds every row
        self._downloaded.add(key)
        super()._restore_from_remote(file_name, trial)


class SessionJsonLoggerCallback(_DownloadOncePerSession, JsonLoggerCallback):
    """``JsonLoggerCallback`` that keeps ``result.json`` rows across pause/unpause."""


class SessionCSVLoggerCallback(_DownloadOncePerSession, CSVLoggerCallback):
    """``CSVLoggerCallback`` that keeps ``progress.csv`` rows across pause/unpause."""


def result_logger_callbacks() -> list:
    """The JSON and CSV logger callbacks for ``RunConfig(callbacks=...)``."""
    return [SessionJsonLoggerCallback(), SessionCSVLoggerCallback()]
