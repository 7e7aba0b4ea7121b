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
from typing import Any

from lsh_tune.errors import LSHUsageError
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.layout import BEST_MODEL, CONFIG_FILE, RESULTS_CSV, STATE_FILE, SUMMARY_FILE
from lsh_tune.search.run.preflight import check_experiment_dir, check_storage
from lsh_tune.storage import Storage

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

        Raises:
            LSHUsageError: the directory holds no ``best.json`` (no finished search).
        """
        store = Storage(experiment_dir)
        if not store.is_file(SUMMARY_FILE):
            raise LSHUsageError(f"{store.uri_of(SUMMARY_FILE)} does not exist: no finished search in {experiment_dir}")
        return cls.from_summary(json.loads(store.read_text(SUMMARY_FILE)))

    @property
    def best_config(self) -> dict[str, Any] | None:
        """The chosen hyperparameters (``sparse_init``, ``death``, ...), or ``None``."""
        return None if self.best is None else dict(self.best["config"])

    @property
    def best_model(self) -> Path | str | None:
        """``best_model.pt``: the chosen candidate's weights and masks (``lsh-tune ls --checkpoint``)."""
        return _join(self.experiment_dir, BEST_MODEL) if self.best is not None else None

    @property
    def results_csv(self) -> Path | str:
        """One row per candidate: config, metric per round, status, final perplexities."""
        return _join(self.experiment_dir, RESULTS_CSV)


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
        **settings: :class:`~lsh_tune.search.SearchConfig` fields that replace ``config``'s.

    Raises:
        LSHUsageError: bad settings (checked here, before Ray starts), storage that cannot be
            written (an object store is probed: :func:`~lsh_tune.search.run.preflight.check_storage`),
            or a search already saved in ``<storage_path>/<name>`` (:meth:`restore` continues it).
    """

    def __init__(self, config: SearchConfig | None = None, /, **settings: Any) -> None:
        if config is None:
            config = SearchConfig(**settings)
        elif settings:
            config = replace(config, **settings)
        self.config = config
        self._resume = False
        check_storage(config.storage_path, config.name)  # an object store: probed, before anything reads it
        check_experiment_dir(config, False)

    @staticmethod
    def can_restore(path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a saved search (its config and its ledger state)."""
        exp = Storage(path)
        return exp.is_file(CONFIG_FILE) and exp.is_file(STATE_FILE)

    @classmethod
    def restore(cls, path: str | os.PathLike, *, address: str | None = None, verbose: int = 1) -> "LSHTuner":
        """The search saved in ``path`` = ``<storage_path>/<name>`` (a directory or an object-store
        URI such as ``s3://bucket/runs/demo``), to continue with :meth:`fit`.

        Its saved settings are kept; ``address`` and ``verbose`` are this run's.

        Raises:
            LSHUsageError: storage that cannot be written, or nothing to resume in ``path``.
        """
        parent, name = Storage.split(path)
        exp = parent.child(name)
        check_storage(parent.uri, name)
        if not cls.can_restore(exp.uri):
            raise LSHUsageError(f"nothing to resume in {exp.uri_of()} (no {CONFIG_FILE}/{STATE_FILE})")
        saved = SearchConfig.load(exp)
        tuner = cls.__new__(cls)
        tuner.config = replace(saved, storage_path=parent.uri, name=name, address=address, verbose=verbose)
        tuner._resume = True
        return tuner

    def fit(self) -> SearchResult:
        """Run the search (or continue it, after :meth:`restore`) to its end and write its outputs."""
        from lsh_tune.search.tune.tuner import run_search

        return SearchResult.from_summary(run_search(self.config, resume=self._resume))
