"""The built-in LSH search from Python, in Ray Tune's idiom: ``LSHTuner(...).fit()`` returns a :class:`SearchResult`.

    >>> import lsh_tune
    >>> tuner = lsh_tune.LSHTuner(model="stacked_lstm", preset="tiny", max_tokens=20000, hpo="tpe",
    ...                           pool=8, rounds_every=1, final_k=2, max_epochs=4, gpus_per_trial=0,
    ...                           storage_path="runs", name="demo")          # doctest: +SKIP
    >>> result = tuner.fit()                                                # doctest: +SKIP
    >>> result.best["cid"], result.best_config, result.best_model          # doctest: +SKIP

``LSHTuner.restore("runs/demo").fit()`` continues an interrupted search. Ray is started on the
first ``fit()`` unless it already runs (``ray.init(...)`` first for other resources or an address).
For your own trainable and model use the scheduler and searcher directly (``lsh_tune.search``:
``make_ledger``, ``candidate_metrics``; ``docs/examples/own_trainable.py``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsh_tune.errors import LSHUsageError
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.layout import BEST_MODEL, CONFIG_FILE, RESULTS_CSV, STATE_FILE, SUMMARY_FILE
from lsh_tune.search.run.preflight import check_experiment_dir, check_storage
from lsh_tune.storage import Storage

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from ray.tune import Callback
    from torch import nn

    from lsh_tune.search.views.epochs import CandidateResult

__all__ = ["LSHTuner", "SearchResult"]


@dataclass(frozen=True)
class SearchResult:
    """What a finished search chose, how it got there, and where its files are.

    Args:
        experiment_dir: ``<storage_path>/<name>``: a :class:`~pathlib.Path`, or the URI (``str``)
            of an experiment on an object store.
        best: the chosen finalist, ``{"cid", "config", "epoch", "val_loss", "val_ppl", "test_loss",
            "test_ppl", "density", ...}`` (perplexities per token), or ``None`` when no finalist finished.
        rounds: every halving round, ``{"round", "ranking": [(cid, value), ...] ascending,
            "removed", "generated", "done"}``.
        reference: the dense reference's ``val_ppl``/``test_ppl`` (metric ``ls``), else ``None``.
        summary: ``best.json`` as written (not compared: the fields above are its content).
    """

    experiment_dir: Path | str
    best: dict[str, Any] | None
    rounds: tuple[dict[str, Any], ...]
    reference: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> "SearchResult":
        """The result of :func:`~lsh_tune.search.run_search`'s summary (the content of ``best.json``)."""
        rounds = tuple(dict(r, ranking=[tuple(x) for x in r["ranking"]]) for r in summary["rounds"])
        return cls(_location(summary["experiment_dir"]), summary.get("best"), rounds, summary.get("reference"),
                   dict(summary))

    @classmethod
    def load(cls, experiment_dir: str | os.PathLike) -> "SearchResult":
        """The result of the finished search in ``experiment_dir`` (a directory or an object-store URI).

        Its files are those in ``experiment_dir``, where the search is now (copied or moved: not
        where it ran, the ``experiment_dir`` of ``best.json``).

        Raises:
            LSHUsageError: the directory holds no ``best.json`` (no finished search).
        """
        store = Storage(experiment_dir)
        if not store.is_file(SUMMARY_FILE):
            raise LSHUsageError(f"{store.uri_of(SUMMARY_FILE)} does not exist: no finished search in {experiment_dir}")
        return replace(cls.from_summary(json.loads(store.read_text(SUMMARY_FILE))), experiment_dir=_location(store.uri))

    @property
    def best_config(self) -> dict[str, Any] | None:
        """The chosen hyperparameters (``sparse_init``, ``death``, ...), or ``None``."""
        return None if self.best is None else dict(self.best["config"])

    @property
    def best_model(self) -> Path | str | None:
        """``best_model.pt``: the chosen candidate's weights, every masked one a sparse CSR tensor
        (``torch.load(path, weights_only=True)`` reads it without lsh_tune; ``lsh-tune ls --checkpoint``
        and :meth:`load_best_model` take this path or URI as it is)."""
        return _join(self.experiment_dir, BEST_MODEL) if self.best is not None else None

    def load_best_model(self) -> nn.Module:
        """The chosen candidate as a plain ``nn.Module`` (the registered model built from its spec),
        masks applied (pruned weights exactly 0), on CPU, in eval mode; read from a directory or an
        object store alike.

        Raises:
            LSHUsageError: no finalist finished (no ``best_model.pt``), or the file is unreadable.
        """
        if self.best is None:
            raise LSHUsageError(f"the search in {self.experiment_dir} chose no model (no finalist finished), "
                                "so there is no best_model.pt to load")
        from lsh_tune.search.run.outputs import load_best_model

        return load_best_model(self.best_model)

    @property
    def results_csv(self) -> Path | str:
        """One row per candidate: config, metric per round, status, final perplexities."""
        return _join(self.experiment_dir, RESULTS_CSV)

    def dataframe(self) -> pd.DataFrame:
        """Every trained epoch of every candidate, one row each, read from the experiment (a directory or
        an object store alike); the dense reference is no row (its scores: :attr:`reference`).

        Columns: ``cid``; ``config/<name>`` per hyperparameter (as Ray Tune's ``get_dataframe()``);
        ``epoch``; ``train_loss``/``val_loss``/``test_loss`` (nats/token) and ``train_ppl``/``val_ppl``/
        ``test_ppl``; ``density``; ``lr``; at an epoch a round ranked: ``round``, ``rank`` (1 = best),
        ``ranking_value`` and ``decision`` (``kept``, ``removed``, ``finalist``); the candidate's
        ``status``, ``born_round``, ``removed_round``; where it ran (``hostname``, ``node_ip``,
        ``node_id``, ``trial_id``, ``pid``, ``gpu_ids``); when (``start_time``, ``end_time``: s since
        the Unix epoch; ``epoch_time_s``, ``ls_time_s``: s). Sorted by cid, then epoch. Every column:
        :mod:`lsh_tune.search.views.epochs`.
        """
        from lsh_tune.search.views.epochs import epoch_frame
        from lsh_tune.search.views.history import SearchHistory

        return epoch_frame(SearchHistory.load(self.experiment_dir))

    def candidates(self) -> tuple[CandidateResult, ...]:
        """Every candidate in order of creation: its ``config``, ``status``, ``born_round``,
        ``removed_round``, ``final`` metrics (a finalist's, else ``None``) and ``history`` (its rows of
        :meth:`dataframe` as dicts, oldest epoch first): :class:`~lsh_tune.search.views.epochs.CandidateResult`."""
        from lsh_tune.search.views.epochs import candidate_results
        from lsh_tune.search.views.history import SearchHistory

        return candidate_results(SearchHistory.load(self.experiment_dir))


def _location(text: str) -> Path | str:
    """An experiment's location: a local :class:`Path`, or an object-store URI kept as text."""
    if "://" in text and not text.startswith("file://"):
        return text
    return Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()


def _join(location: Path | str, name: str) -> Path | str:
    if isinstance(location, Path):
        return location / name
    base, sep, query = location.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


class LSHTuner:
    """A ``tune.Tuner``-like front of the LSH search: settings in, :meth:`fit` → :class:`SearchResult`.

    Args:
        config: the search; ``None`` starts from the defaults of :class:`~lsh_tune.search.SearchConfig`.
        callbacks: your own :class:`ray.tune.Callback` instances (``MLflowLoggerCallback``,
            ``WandbLoggerCallback``, ...), which Tune calls beside the search's own on every hook of
            this run (they need not pickle; not saved with the search: give them to :meth:`restore` again).
        **settings: :class:`~lsh_tune.search.SearchConfig` fields that replace ``config``'s.

    Raises:
        LSHUsageError: bad settings (checked here, before Ray starts), storage that cannot be
            written (an object store is probed: :func:`~lsh_tune.search.run.preflight.check_storage`),
            a search already saved in ``<storage_path>/<name>`` (:meth:`restore` continues it), or
            ``callbacks`` that are not a list of Tune callbacks.
    """

    def __init__(self, config: SearchConfig | None = None, /, *, callbacks: list[Callback] | None = None,
                 **settings: Any) -> None:
        if config is None:
            config = SearchConfig(**settings)
        elif settings:
            config = replace(config, **settings)
        self.config = config
        self._resume = False
        self.callbacks = _checked_callbacks(callbacks)
        check_storage(config.storage_path, config.name)  # an object store: probed, before anything reads it
        check_experiment_dir(config, False)

    @staticmethod
    def can_restore(path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a saved search (its config and its ledger state)."""
        exp = Storage(path)
        return exp.is_file(CONFIG_FILE) and exp.is_file(STATE_FILE)

    @classmethod
    def restore(cls, path: str | os.PathLike, *, address: str | None = None, verbose: int = 1,
                callbacks: list[Callback] | None = None) -> "LSHTuner":
        """The search saved in ``path`` = ``<storage_path>/<name>`` (a directory or an object-store
        URI such as ``s3://bucket/runs/demo``), to continue with :meth:`fit`.

        Its saved settings are kept; ``address``, ``verbose`` and ``callbacks`` are this run's: the
        callbacks of the run before are not saved, so give them again. What each callback's
        ``get_state()`` returned in the run before reaches ``set_state()`` of the callback at the same
        position here (Tune's callback state: :mod:`lsh_tune.search.tune._user_callbacks`).

        Raises:
            LSHUsageError: storage that cannot be written, nothing to resume in ``path``, or
                ``callbacks`` that are not a list of Tune callbacks.
        """
        callbacks = _checked_callbacks(callbacks)
        parent, name = Storage.split(path)
        exp = parent.child(name)
        check_storage(parent.uri, name)
        if not cls.can_restore(exp.uri):
            raise LSHUsageError(f"nothing to resume in {exp.uri_of()} (no {CONFIG_FILE}/{STATE_FILE})")
        saved = SearchConfig.load(exp)
        tuner = cls.__new__(cls)
        tuner.config = replace(saved, storage_path=parent.uri, name=name, address=address, verbose=verbose)
        tuner._resume = True
        tuner.callbacks = callbacks
        return tuner

    def fit(self) -> SearchResult:
        """Run the search (or continue it, after :meth:`restore`) to its end and write its outputs."""
        from lsh_tune.search.tune.tuner import run_search

        summary = run_search(self.config, resume=self._resume, callbacks=list(self.callbacks))
        return SearchResult.from_summary(summary)


def _checked_callbacks(callbacks: list[Callback] | None) -> tuple[Callback, ...]:
    """``callbacks`` checked (Ray's ``Callback`` is imported only when some are given)."""
    if callbacks is None:
        return ()
    from lsh_tune.search.tune._user_callbacks import check_callbacks

    return check_callbacks(callbacks)
