"""The settings of one LSH search (:class:`SearchConfig`, the ``lsh-tune search`` options) and their checks.

Ray-free. Every field's value is checked when a config is built (:mod:`lsh_tune.search._checks`). A
search saves its config as ``<experiment>/lsh/search.json`` (:data:`~lsh_tune.search.layout.CONFIG_FILE`);
a resume reads it back (:func:`lsh_tune.search.run.preflight.check_experiment_dir`), so a resumed
search keeps the settings it started with.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from lsh_tune.data import KNOWN_CORPORA
from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import CONVENTIONS
from lsh_tune.lyapunov.spectrum import QR_ORDERS
from lsh_tune.models import MODELS, PRESETS
from lsh_tune.search._checks import check_search_fields
from lsh_tune.search._generators import HPO_METHODS, generator_class
from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search._ls_fit import LSSpace
from lsh_tune.search._pool import PoolConfig, plan_schedule, required_max_epochs
from lsh_tune.search.layout import CONFIG_FILE
from lsh_tune.search.packing import AUTO, parse_gpus_per_trial
from lsh_tune.search.signals import (DEFAULT_METRIC, RANKING_METRICS, RankingSignal, apply_ls_preset, ls_preset_field,
                                     ls_setting, signal_for)
from lsh_tune.space import DEFAULT_DEATH_RATE_GRID, DEFAULT_SPACE, SearchSpace
from lsh_tune.storage import Storage

__all__ = ["CONFIG_FILE", "SearchConfig"]

#: Default pool size of the generators that sample (``grid`` defaults to its whole grid).
DEFAULT_POOL = 20


@dataclass(frozen=True)
class SearchConfig:
    """One LSH search (the ``lsh-tune search`` options).

    Args:
        model, preset, corpus: see :func:`lsh_tune.models.get_preset` / :func:`lsh_tune.data.load_corpus`.
        sparsity: target sparsity s.
        hpo: refill generator, one of :data:`~lsh_tune.search.HPO_METHODS`.
        metric: the ranking signal (:data:`~lsh_tune.search.signals.SIGNALS`): ``hybrid`` (the mean of the
            LS-distance rank and the validation-loss rank; the default,
            :data:`~lsh_tune.search.signals.DEFAULT_METRIC`), ``ls`` (LS distance to the dense reference) or ``loss`` (validation loss).
        pool: initial pool size |P| (``None``: the whole grid of ``space`` for ``grid``, else 20).
        rounds_every: E.
        final_k: finalists.
        max_epochs: total epochs of a finalist (``None``: the preset's epochs, raised to the
            smallest value the schedule allows).
        max_rounds, epoch_budget: optional selection budgets.
        gpus_per_trial, cpus_per_trial: Ray resources per trial (fractional allowed); ``gpus_per_trial``
            ``auto`` (the default) is resolved once Ray runs (:mod:`lsh_tune.search.packing`): 0 without
            GPUs, else 1/k for k trials per GPU from the model's memory and measured throughput.
        gpus_per_trial_auto: why ``auto`` chose the saved ``gpus_per_trial`` (``None``: it was given;
            not a command-line option). A resumed search keeps the number.
        storage_path, name: experiment directory ``<storage_path>/<name>``.
        seed: search seed (also the LS space's t-SNE random state, see :class:`LSSpace`).
        max_tokens: keep the first ``max_tokens`` tokens of each split (quick runs).
        data_dir: extra corpus directory.
        reference_epochs: dense reference epochs (``None``: ``max_epochs``).
        reference_checkpoint: use this dense checkpoint instead of training one.
        ls_k, ls_steps, ls_warmup, ls_top, ls_state, ls_qr: :class:`lsh_tune.lyapunov.LSConfig`
            (``ls_qr``: ``layered``, one QR per layer, or ``joint``, the authors' one QR over all).
        ls_embedding, ls_distance: LS-space embedding and distance.
        ls_fit: ``pool`` (each round fits the LS space on the reference and every ranked
            candidate's history), ``candidate`` (rank by the distance each trial reports, fitted on
            the reference and that candidate's history only; same result as ``pool`` for ``raw``) or
            ``authors`` (the authors' code: per candidate at its epoch e, the reference's epochs 0..e and
            its own history, against the reference at e, −inf → 0).
        ls_preset: ``paper`` or ``authors`` sets the LS fields :data:`~lsh_tune.search.signals.LS_PRESETS`
            names (a field given with another value is refused); ``None``: each as given.
        grid_death_rate: death rate of the ``grid`` variants.
        lr: override the preset's learning rate.
        address: Ray address (``auto`` for a running cluster, ``HOST:PORT``, ``ray://HOST[:PORT]``);
            ``None`` starts/uses a local Ray. Checked before Ray starts
            (:func:`~lsh_tune.search.run.ray_address.check_ray_address`).
        verbose: what the terminal shows: 0 the summary only, 1 (default) the live view of the search
            (:mod:`lsh_tune.search.views.console`), 2 also Tune's reporter and Ray's logs, 3 Tune's details.
        allow_cpu_fallback: a trial that Ray gave a GPU on which CUDA is unusable trains on the CPU
            instead of failing with the reason (also ``LSH_ALLOW_CPU_FALLBACK=1`` on the workers).
        max_failures: Tune's ``FailureConfig(max_failures)``: a trial whose worker process or node
            dies restarts (from its newest state) this many times before the candidate is dropped.
        space: the hyperparameter space searched (not a command-line option; saved with the config).
        setting: a training setting that replaces the preset's and ``max_tokens`` (not a
            command-line option: ``lsh-tune search --table TABLE`` sets it from a table,
            :meth:`lsh_tune.table.TableSettings.search_setting`, so a real search trains exactly
            what ``lsh-tune replay TABLE`` replays): ``model_spec`` and ``train_spec`` (dicts of
            :class:`~lsh_tune.models.ModelSpec` / :class:`~lsh_tune.models.TrainSpec`), ``corpus``,
            ``train_tokens`` / ``eval_tokens`` (first tokens of the training / validation and test
            splits, ``None``: whole), ``sparse`` (sparse-init options of
            :class:`~lsh_tune.sparse.SparseConfig`, e.g. ``init_scale``). ``preset`` is then not used.
    """

    model: str = field(default="stacked_lstm", metadata={"choices": MODELS, "help": "architecture"})
    preset: str = field(default="tiny", metadata={"choices": PRESETS, "help": "size preset"})
    corpus: str = field(default="ptb", metadata={
        "help": f"{', '.join(KNOWN_CORPORA)} or a directory with train/valid/test"})
    sparsity: float = field(default=0.67, metadata={"help": "target sparsity s"})
    hpo: str = field(default="tpe", metadata={"choices": HPO_METHODS, "help": "refill generator"})
    metric: str = field(default=DEFAULT_METRIC, metadata={
        "choices": RANKING_METRICS,
        "help": "hybrid (mean of the LS-distance rank and the validation-loss rank; the default, chosen on "
                "tables/bench), ls (LS distance alone, LSH as published) or loss (loss-based baseline)"})
    pool: int | None = field(default=None, metadata={
        "help": f"initial pool size (default: the whole grid for grid, else {DEFAULT_POOL})"})
    rounds_every: int = field(default=3, metadata={"help": "E: epochs per round"})
    final_k: int = field(default=2, metadata={"help": "stop halving at this pool size"})
    max_epochs: int | None = field(default=None, metadata={
        "help": "total epochs of a finalist (default: the preset's, raised to what the schedule needs)"})
    max_rounds: int | None = field(default=None, metadata={"help": "cap on halving rounds"})
    epoch_budget: int | None = field(default=None, metadata={"help": "cap on candidate-epochs in selection"})
    gpus_per_trial: float | str = field(default=AUTO, metadata={
        "type": parse_gpus_per_trial, "metavar": "{auto,N}",
        "help": "GPUs per trial, fractional ok; auto: 0 where the Ray cluster has no GPU, else several trials per "
                "GPU from the model's estimated memory and measured throughput (the paper stacked LSTM: 4 per H200)"})
    gpus_per_trial_auto: str | None = field(default=None, metadata={"cli": False})
    cpus_per_trial: float = field(default=1.0, metadata={"help": "CPUs per trial"})
    storage_path: str = field(default="~/lsh_results", metadata={"help": "experiment root (shared on a cluster)"})
    name: str = field(default="lsh", metadata={"help": "experiment name (directory under --storage-path)"})
    seed: int = field(default=0, metadata={"help": "search seed"})
    max_tokens: int | None = field(default=None, metadata={"help": "keep the first N tokens of each split"})
    data_dir: str | None = field(default=None, metadata={"help": "extra directory searched for the corpus"})
    reference_epochs: int | None = field(default=None, metadata={
        "help": "dense reference epochs (default: --max-epochs)"})
    reference_checkpoint: str | None = field(default=None, metadata={
        "help": "dense checkpoint instead of training one"})
    ls_k: int = field(default=2, metadata={"help": "validation sequences K of every spectrum"})
    ls_steps: int = field(default=35, metadata={"help": "averaged steps T of every spectrum"})
    ls_warmup: int = field(default=10, metadata={"help": "warm-up steps before averaging"})
    ls_top: int | None = field(default=None, metadata={"help": "compute only the top exponents (16 ranks well under h after 1-2 epochs)"})
    ls_state: str = field(default="h", metadata={
        "choices": CONVENTIONS, "help": "h (paper: c held fixed) or hc (full LSTM state; ranks better after 1-2 epochs, BENCHMARKS.md)"})
    ls_qr: str = field(default="layered", metadata={
        "choices": QR_ORDERS, "help": "layered (one QR per layer), joint (the authors' one QR over all layers) or cholesky (layered, Cholesky QR per step: for GPUs, BENCHMARKS.md)"})
    ls_embedding: str = ls_setting("ls_embedding")
    ls_distance: str = ls_setting("ls_distance")
    ls_fit: str = ls_setting("ls_fit")
    ls_preset: str | None = ls_preset_field()
    grid_death_rate: float = field(default=DEFAULT_DEATH_RATE_GRID, metadata={"help": "death rate of the grid"})
    lr: float | None = field(default=None, metadata={"help": "override the preset's learning rate"})
    address: str | None = field(default=None, metadata={
        "help": "Ray address: auto (running cluster), local, host:port or ray://host[:port]; one where nothing "
                "answers a TCP connect within 10 s (LSH_RAY_CONNECT_TIMEOUT_S) is refused"})
    verbose: int = field(default=1, metadata={
        "help": "0 summary only, 1 live view of the search (default), 2 + Tune's reporter and Ray's logs, 3 + details"})
    max_failures: int = field(default=3, metadata={
        "help": "restarts of a trial whose worker died (node lost, OOM) before it counts as failed"})
    allow_cpu_fallback: bool = field(default=False, metadata={
        "help": "a trial given a GPU where CUDA is unusable trains on the CPU (default: it fails with the reason)"})
    space: SearchSpace = field(default=DEFAULT_SPACE, metadata={"cli": False})
    setting: dict | None = field(default=None, metadata={"cli": False})

    def __post_init__(self) -> None:
        apply_ls_preset(self)      # --ls-preset paper|authors sets the ls_* fields it names
        check_search_fields(self)  # every field's value (lsh_tune/search/_checks.py)
        n_grid = len(self.space.grid(self.grid_death_rate))
        if self.hpo == "grid" and self.pool_size > n_grid:
            raise LSHUsageError(f"pool={self.pool_size} exceeds the grid's {n_grid} variants; use --pool <= {n_grid}")
        self.pool_config()  # validates the schedule

    @property
    def pool_size(self) -> int:
        """|P|: ``pool``, else the whole grid of :attr:`space` (``grid``) or :data:`DEFAULT_POOL`."""
        if self.pool is not None:
            return self.pool
        return len(self.space.grid()) if self.hpo == "grid" else DEFAULT_POOL

    def storage(self) -> Storage:
        """The storage root ``storage_path``: a directory (local disk, NFS) or an object-store URI."""
        return Storage(self.storage_path)

    def experiment(self) -> Storage:
        """The experiment's storage, ``<storage_path>/<name>``: every file of the search goes through it."""
        return self.storage().child(self.name)

    @property
    def experiment_dir(self) -> Path:
        """``<storage_path>/<name>`` as a local path.

        Raises:
            LSHUsageError: the storage path is an object-store URI (use :meth:`experiment`).
        """
        local = self.experiment().local_root
        if local is None:
            raise LSHUsageError(f"storage_path={self.storage_path!r} is an object-store URI: the experiment has "
                                "no local directory (use SearchConfig.experiment())")
        return local

    def resolved_max_epochs(self) -> int:
        """``max_epochs``, else the preset's epochs raised to the smallest value the schedule allows."""
        if self.max_epochs is not None:
            return self.max_epochs
        rounds = plan_schedule(self.pool_size, self.rounds_every, self.final_k,
                               generates=generator_class(self.hpo).generates, max_rounds=self.max_rounds,
                               epoch_budget=self.epoch_budget)
        return max(self.specs()[1].epochs, required_max_epochs(len(rounds), self.rounds_every))

    def pool_config(self, untrained_ppl: float | None = None) -> PoolConfig:
        """The schedule of the search; ``untrained_ppl``: see :class:`~lsh_tune.search._pool.PoolConfig`
        (a run passes the vocabulary size)."""
        return SearchLedger.pool_config_for(
            self.hpo, pool_size=self.pool_size, rounds_every=self.rounds_every, max_epochs=self.resolved_max_epochs(),
            final_k=self.final_k, max_rounds=self.max_rounds, epoch_budget=self.epoch_budget, metric=self.metric,
            seed=self.seed, untrained_ppl=untrained_ppl)

    def signal(self) -> RankingSignal:
        """What the rounds rank by: the signal ``metric`` with the ``ls_*`` settings
        (:func:`~lsh_tune.search.signals.signal_for`)."""
        return signal_for(self)

    @property
    def size_label(self) -> str:
        """What sizes the model, for messages: the preset, or ``"table setting"`` with :attr:`setting`."""
        return "table setting" if self.setting is not None else self.preset

    def specs(self):
        """``(ModelSpec, TrainSpec)`` of the preset (or of :attr:`setting`), ``lr`` overridden when set."""
        from lsh_tune.models import ModelSpec, TrainSpec, get_preset, with_overrides

        if self.setting is not None:
            model_spec = ModelSpec.from_dict(self.setting["model_spec"])
            train_spec = TrainSpec.from_dict(self.setting["train_spec"])
        else:
            model_spec, train_spec = get_preset(self.model, self.preset)
        return model_spec, with_overrides(train_spec, lr=self.lr)

    def ls_config(self):
        """The :class:`lsh_tune.lyapunov.LSConfig` of every spectrum of the search."""
        from lsh_tune.lyapunov import LSConfig

        return LSConfig(k=self.ls_k, steps=self.ls_steps, warmup=self.ls_warmup, top=self.ls_top, state=self.ls_state,
                        qr=self.ls_qr)

    def ls_space(self) -> LSSpace:
        """The LS space of the search: ``ls_embedding``, ``ls_distance``, t-SNE seeded by ``seed``."""
        return LSSpace(self.ls_embedding, self.ls_distance, self.seed)

    def to_dict(self) -> dict:
        """JSON-serialisable form (``space`` as :meth:`SearchSpace.to_dict`)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["space"] = self.space.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        """A saved config; one saved before ``ls_qr`` existed ran the ``joint`` order and keeps it,
        one saved before ``space`` was saved searched :data:`~lsh_tune.space.DEFAULT_SPACE`."""
        known = {f.name for f in fields(cls)}
        kwargs = {"ls_qr": "joint", **{k: v for k, v in d.items() if k in known}}
        if kwargs.get("space") is not None:
            kwargs["space"] = SearchSpace.from_dict(kwargs["space"])
        else:
            kwargs.pop("space", None)
        return cls(**kwargs)

    def save(self) -> None:
        """Write :data:`CONFIG_FILE` in the experiment's storage (all-or-nothing)."""
        self.experiment().write_text(CONFIG_FILE, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, experiment: Storage | str | os.PathLike) -> "SearchConfig":
        """The config saved in ``experiment`` (a directory, URI or Storage; its ``storage_path``/``name`` as saved)."""
        store = experiment if isinstance(experiment, Storage) else Storage(experiment)
        return cls.from_dict(store.read_json(CONFIG_FILE))

