"""The driver's side of one run of a search: its events, live view and TensorBoard log, then what it leaves.

Ray-free (the Tune callback that feeds it is :mod:`lsh_tune.search.tune._events_callback`).
:func:`search_session` opens the experiment's :class:`~lsh_tune.search.views.events.EventLog`, registers
the :class:`~lsh_tune.search.views.progress.SearchProgress` the callback will find, starts the live
console view (``verbose >= 1``) and emits ``search_start``; the TensorBoard log is rebuilt (in a
background thread, requests coalesced) whenever an epoch (a candidate's or the reference's) or a
round closes, or a finalist finishes. Inside the session the caller emits ``result``
(:meth:`SearchProgress.finish`) once the outputs are written; :func:`publish_views` then writes
the figures and the final TensorBoard log; :func:`closing_text` is what the command line prints
at the end (the report and the ``tensorboard --logdir`` line).
"""
from __future__ import annotations

import logging
import math
import threading
from contextlib import contextmanager
from typing import Iterator

from lsh_tune.search.layout import FIGURES_DIR, TENSORBOARD_DIR
from lsh_tune.search.views.events import EventLog
from lsh_tune.search.views.progress import SearchProgress, progress_for

__all__ = ["search_session", "publish_views", "closing_text", "trial_slots"]

logger = logging.getLogger(__name__)
#: Events after which the TensorBoard log is rebuilt while the search runs: every epoch (the
#: reference's and the candidates', so they appear as they finish), every round and finalist.
_TENSORBOARD_EVENTS = ("epoch", "reference_epoch", "reference_done", "round", "finalist_done")


def trial_slots(cfg, resources: dict) -> int:
    """How many trials of ``cfg`` fit at once in Ray's ``resources`` (``ray.cluster_resources()``), ≥ 1."""
    fits = [math.floor(float(resources.get(name, 0.0)) / need + 1e-9)
            for name, need in (("CPU", cfg.cpus_per_trial), ("GPU", cfg.gpus_per_trial)) if need > 0]
    return max(1, min(fits, default=1))


class _BackgroundTensorBoard:
    """Rebuilds the TensorBoard log in a thread after each epoch/round/finalist event, so Tune's loop never
    waits for it (a rebuild draws every round's LS-space image); requests made while one runs are
    coalesced into one more rebuild."""

    def __init__(self, experiment) -> None:
        self.experiment = experiment
        self._wanted = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="lsh-tensorboard", daemon=True)
        self._thread.start()

    def __call__(self, event: dict) -> None:
        if event["kind"] in _TENSORBOARD_EVENTS:
            self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stop:
                return
            self._wanted.clear()
            _rebuild_tensorboard(self.experiment)

    def close(self) -> None:
        """Finish the rebuild in progress (if any) and stop; later ones are :func:`publish_views`' job."""
        self._stop = True
        self._wanted.set()
        self._thread.join()


def _rebuild_tensorboard(source) -> None:
    """Rewrite the TensorBoard log of ``source`` (a Storage or a SearchHistory); a failure is logged,
    never fatal to the search."""
    from lsh_tune.search.views.tensorboard import write_tensorboard

    try:
        write_tensorboard(source)
    except Exception:  # noqa: BLE001 - the log is a view; the search goes on without it
        logger.exception("could not write the TensorBoard log of %s", getattr(source, "storage", source).uri_of())


def _start_facts(cfg, corpus) -> dict:
    from lsh_tune.data import unigram_perplexities

    return {"name": cfg.name, "model": cfg.model, "preset": cfg.size_label, "corpus": cfg.corpus,
            "sparsity": cfg.sparsity, "hpo": cfg.hpo, "unigram": unigram_perplexities(corpus),
            "tokens": [int(corpus.train.numel()), int(corpus.valid.numel()), int(corpus.test.numel())]}


@contextmanager
def search_session(cfg, ledger_opener, corpus, *, slots: int, reference: dict | None = None,
                   tensorboard: bool = True) -> Iterator[SearchProgress]:
    """Events, the live view (``cfg.verbose >= 1``) and the live TensorBoard log of one run of ``cfg``.

    Args:
        cfg: the search (:class:`~lsh_tune.search.config.SearchConfig`).
        ledger_opener: ``() -> SearchLedger`` of the experiment.
        corpus: the search's corpus (for the unigram baseline).
        slots: trials that run at once (:func:`trial_slots`).
        reference: :func:`~lsh_tune.search.run.reference.prepare_reference`'s dict; a reference already
            in the cache is announced at once (its trial will not run).
        tensorboard: rebuild the TensorBoard log on each epoch, round and finalist.
    """
    from lsh_tune.search.views.console import ConsoleView

    exp = cfg.experiment()
    view = ConsoleView() if cfg.verbose >= 1 else None
    board = _BackgroundTensorBoard(exp) if tensorboard else None
    log = EventLog(exp, [x for x in (view, board) if x is not None])
    progress = progress_for(exp, lambda: SearchProgress(log, ledger_opener, slots=slots))
    try:
        if view is not None:
            view.start()
        progress.start(**_start_facts(cfg, corpus))
        meta = (reference or {}).get("meta") or {}
        if meta.get("cached") and not log.of_kind("reference_done"):
            log.emit("reference_done", val_ppl=meta.get("val_ppl"), test_ppl=meta.get("test_ppl"), cached=True)
        yield progress
    finally:
        try:
            log.close()  # an object store: the events not uploaded yet (a local file has them all already)
        except Exception:  # noqa: BLE001 - the event file is a view; the search's own state is saved apart
            logger.warning("could not save the last events of %s", exp.uri_of(), exc_info=True)
        if board is not None:
            board.close()
        if view is not None:
            view.close()


def publish_views(cfg) -> None:
    """After the outputs are written: the figures and the final TensorBoard log (failures are logged)."""
    from lsh_tune.search.views.figures import write_figures
    from lsh_tune.search.views.history import SearchHistory

    history = SearchHistory.load(cfg.experiment())
    _rebuild_tensorboard(history)
    try:
        write_figures(history)
    except Exception:  # noqa: BLE001 - figures are a view; the search's results stand without them
        logger.exception("could not draw the figures of %s", history.storage.uri_of())


def closing_text(experiment) -> str:
    """The report of the finished search and how to open its TensorBoard log (what the CLI prints last)."""
    from lsh_tune.search.views.history import SearchHistory
    from lsh_tune.search.views.report import build_report, render_markdown

    history = SearchHistory.load(experiment)
    return (render_markdown(build_report(history)) + "\n"
            f"figures: {history.storage.uri_of(FIGURES_DIR)}/ · TensorBoard: tensorboard --logdir "
            f"{history.storage.uri_of(TENSORBOARD_DIR)}\n")
