"""The search runner: dense reference, Tuner setup (fresh or restored) and the outputs.

``run_search(SearchConfig(...))`` is what ``lsh-tune search`` and the experiment scripts call.

Experiment directory ``<storage_path>/<name>/`` (besides Tune's own files):

* ``lsh/search.json`` — the :class:`SearchConfig` (a resume reuses it);
* ``lsh/state.json`` — the pool/ledger state (rounds, rankings, histories, statuses); not at the
  top level, where Tune's restore would overwrite it with a stale copy;
* ``candidates/<cid>/state.pt`` — each candidate's latest full training state;
* ``epochs.jsonl`` — one line per trained epoch (exactly-once audit);
* after the search: ``results.csv``/``results.json`` (one row per candidate), ``best.json``
  (the chosen configuration and its metrics) and ``best_model.pt`` (standalone sparse state
  dict with masks, loadable by ``lsh-tune ls --checkpoint`` / :func:`lsh_tune.lyapunov.load_checkpoint_model`).

The dense reference's LS history is computed once per (model, corpus, seed, LS settings,
training settings) and cached under ``<storage_path>/reference_cache`` (see
:class:`lsh_tune.lyapunov.ReferenceCache`); every trial receives it through the object store.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsh_tune.errors import LSHUsageError, check_choice, check_range
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS
from lsh_tune.lyapunov.spectrum import QR_ORDERS
from lsh_tune.search._generators import HPO_METHODS
from lsh_tune.search._ledger import STATE_FILE, SearchLedger
from lsh_tune.search._ls_fit import LS_FITS, PoolLSFit
from lsh_tune.storage import atomic_write_text
from lsh_tune.search._pool import PoolConfig, plan_rounds
from lsh_tune.search._trainable import TrialSettings, candidate_state_path, candidate_trainable
from lsh_tune.space import DEFAULT_DEATH_RATE_GRID, DEFAULT_SPACE, SearchSpace

__all__ = ["SearchConfig", "run_search", "prepare_reference", "export_best", "check_experiment_dir",
           "trainable_for", "write_outputs", "CONFIG_FILE"]

logger = logging.getLogger(__name__)
CONFIG_FILE = "lsh/search.json"


@dataclass(frozen=True)
class SearchConfig:
    """One LSH search (the ``lsh-tune search`` options).

    Args:
        model, preset, corpus: see :func:`lsh_tune.models.get_preset` / :func:`lsh_tune.data.load_corpus`.
        sparsity: target sparsity s.
        hpo: refill generator, one of :data:`~lsh_tune.search.HPO_METHODS`.
        metric: ``ls`` (LS distance to the dense reference) or ``loss`` (validation loss).
        pool: initial pool size |P| (``None``: 24 for ``grid``, else 20).
        rounds_every: E.
        final_k: finalists.
        max_epochs: total epochs of a finalist (``None``: the preset's epochs, raised to the
            smallest value the schedule allows).
        max_rounds, epoch_budget: optional selection budgets.
        gpus_per_trial, cpus_per_trial: Ray resources per trial (fractional allowed).
        storage_path, name: experiment directory ``<storage_path>/<name>``.
        seed: search seed.
        max_tokens: keep the first ``max_tokens`` tokens of each split (quick runs).
        data_dir: extra corpus directory.
        reference_epochs: dense reference epochs (``None``: ``max_epochs``).
        reference_checkpoint: use this dense checkpoint instead of training one.
        ls_k, ls_steps, ls_warmup, ls_top, ls_state, ls_qr: :class:`lsh_tune.lyapunov.LSConfig`
            (``ls_qr``: ``layered``, one QR per layer, or ``joint``, the authors' one QR over all).
        ls_embedding, ls_distance: LS-space embedding and distance.
        ls_fit: ``pool`` (the paper: each round fits the LS space on the reference and every ranked
            candidate's history) or ``candidate`` (rank by the distance each trial reports, fitted on
            the reference and that candidate's history only). Same result for ``raw``.
        grid_death_rate: death rate of the ``grid`` variants.
        lr: override the preset's learning rate.
        address: Ray address (``auto`` for a running cluster); ``None`` starts/uses a local Ray.
        verbose: Tune verbosity (0–3).
    """

    model: str = "stacked_lstm"
    preset: str = "tiny"
    corpus: str = "ptb"
    sparsity: float = 0.67
    hpo: str = "tpe"
    metric: str = "ls"
    pool: int | None = None
    rounds_every: int = 3
    final_k: int = 2
    max_epochs: int | None = None
    max_rounds: int | None = None
    epoch_budget: int | None = None
    gpus_per_trial: float = 1.0
    cpus_per_trial: float = 1.0
    storage_path: str = "~/lsh_results"
    name: str = "lsh"
    seed: int = 0
    max_tokens: int | None = None
    data_dir: str | None = None
    reference_epochs: int | None = None
    reference_checkpoint: str | None = None
    ls_k: int = 2
    ls_steps: int = 35
    ls_warmup: int = 10
    ls_top: int | None = None
    ls_state: str = "h"
    ls_qr: str = "layered"
    ls_embedding: str = "pca"
    ls_distance: str = "l2"
    ls_fit: str = "pool"
    grid_death_rate: float = DEFAULT_DEATH_RATE_GRID
    lr: float | None = None
    address: str | None = None
    verbose: int = 1

    def __post_init__(self) -> None:
        check_choice("hpo", self.hpo, HPO_METHODS)
        check_choice("metric", self.metric, ("ls", "loss"))
        check_choice("ls_embedding", self.ls_embedding, EMBEDDINGS)
        check_choice("ls_distance", self.ls_distance, METRICS)
        check_choice("ls_fit", self.ls_fit, LS_FITS)
        check_choice("ls_qr", self.ls_qr, QR_ORDERS)
        check_range("sparsity", self.sparsity, 0.0, 1.0, low_open=True, high_open=True)
        check_range("gpus_per_trial", self.gpus_per_trial, 0.0, None)
        check_range("cpus_per_trial", self.cpus_per_trial, 0.0, None)
        if self.gpus_per_trial == 0 and self.cpus_per_trial == 0:
            raise LSHUsageError("gpus_per_trial=0 and cpus_per_trial=0: a trial needs some resource")
        if not self.name or "/" in self.name:
            raise LSHUsageError(f"name={self.name!r} must be a non-empty directory name without '/'")
        n_grid = len(DEFAULT_SPACE.grid(self.grid_death_rate))
        if self.hpo == "grid" and self.pool_size > n_grid:
            raise LSHUsageError(f"pool={self.pool_size} exceeds the grid's {n_grid} variants; use --pool <= {n_grid}")
        self.pool_config()  # validates the schedule

    @property
    def pool_size(self) -> int:
        return self.pool if self.pool is not None else (len(DEFAULT_SPACE.grid()) if self.hpo == "grid" else 20)

    @property
    def experiment_dir(self) -> Path:
        return Path(os.path.expanduser(self.storage_path)).resolve() / self.name

    def resolved_max_epochs(self) -> int:
        if self.max_epochs is not None:
            return self.max_epochs
        from lsh_tune.models import get_preset

        probe = SearchLedger.pool_config_for(self.hpo, pool_size=self.pool_size, rounds_every=self.rounds_every,
                                             max_epochs=10**6, final_k=self.final_k, max_rounds=self.max_rounds,
                                             epoch_budget=self.epoch_budget)
        need = len(plan_rounds(probe)) * self.rounds_every + 1
        return max(get_preset(self.model, self.preset)[1].epochs, need)

    def pool_config(self) -> PoolConfig:
        return SearchLedger.pool_config_for(
            self.hpo, pool_size=self.pool_size, rounds_every=self.rounds_every, max_epochs=self.resolved_max_epochs(),
            final_k=self.final_k, max_rounds=self.max_rounds, epoch_budget=self.epoch_budget, metric=self.metric,
            seed=self.seed)

    def ls_config(self):
        from lsh_tune.lyapunov import LSConfig

        return LSConfig(k=self.ls_k, steps=self.ls_steps, warmup=self.ls_warmup, top=self.ls_top, state=self.ls_state,
                        qr=self.ls_qr)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        """A saved config; one saved before ``ls_qr`` existed ran the ``joint`` order and keeps it."""
        known = {f.name for f in fields(cls)}
        return cls(**{"ls_qr": "joint", **{k: v for k, v in d.items() if k in known}})


_CORPORA: dict[tuple, Any] = {}


def _corpus(cfg: SearchConfig):
    """The corpus of ``cfg``, tokenised once per process (searches in one process share it)."""
    from lsh_tune.data import load_corpus

    key = (cfg.corpus, cfg.data_dir, cfg.max_tokens)
    if key not in _CORPORA:
        _CORPORA.clear()
        _CORPORA[key] = load_corpus(cfg.corpus, cfg.data_dir, max_tokens=cfg.max_tokens)
    return _CORPORA[key]


def _specs(cfg: SearchConfig):
    from lsh_tune.models import get_preset, with_overrides

    model_spec, train_spec = get_preset(cfg.model, cfg.preset)
    return model_spec, with_overrides(train_spec, lr=cfg.lr)


def prepare_reference(cfg: SearchConfig, corpus) -> dict:
    """Train (or load) the dense reference once and return its cached LS history and LS tokens.

    Returns:
        ``{"history": (E, N) array (per-epoch spectra then the final one), "tokens": (T, K),
        "meta": {...}}``.
    """
    from lsh_tune.lyapunov import ReferenceCache, lyapunov_spectrum, reference_key, validation_tokens
    from lsh_tune.models import build_model
    from lsh_tune.train import Trainer

    model_spec, train_spec = _specs(cfg)
    ls_cfg = cfg.ls_config()
    tokens = validation_tokens(corpus, k=ls_cfg.k, length=ls_cfg.total_steps)
    epochs = cfg.reference_epochs or cfg.resolved_max_epochs()
    extra = {"train_spec": train_spec.to_dict(), "epochs": epochs, "vocab_size": len(corpus.vocab),
             "max_tokens": cfg.max_tokens, "checkpoint": cfg.reference_checkpoint}
    key = reference_key(model_spec, corpus.name, cfg.seed, ls_cfg, extra=extra)
    cache = ReferenceCache(Path(os.path.expanduser(cfg.storage_path)).resolve() / "reference_cache")

    def compute():
        torch.manual_seed(cfg.seed)
        if cfg.reference_checkpoint:
            from lsh_tune.lyapunov import load_checkpoint_model

            model, _ = load_checkpoint_model(cfg.reference_checkpoint)
            return np.zeros((0, 0)), lyapunov_spectrum(model, tokens, ls_cfg)
        model = build_model(model_spec, len(corpus.vocab))
        trainer = Trainer(model, corpus, train_spec, seed=cfg.seed, device="cpu", max_epochs=epochs)
        history = []
        for _ in range(epochs):
            m = trainer.train_epoch()
            history.append(_reference_ls(trainer, tokens, ls_cfg))
            logger.info("dense reference epoch %d: val_ppl %.2f", m["epoch"], m["val_ppl"])
        test_loss = trainer.evaluate("test")
        trainer.save(cache.path(key).with_suffix(".pt"), model_spec=model_spec.to_dict(), corpus=corpus.name,
                     vocab_size=len(corpus.vocab))
        meta_extra["val_ppl"] = float(m["val_ppl"])
        meta_extra["test_ppl"] = float(math.exp(test_loss))
        return np.stack(history), history[-1]

    meta_extra: dict[str, Any] = {}
    ref, cached = cache.get_or_compute(key, compute, meta={"extra": extra, "key": key})
    if meta_extra:
        cache.save(key, ref.history, ref.final, {**ref.meta, **meta_extra})
        ref.meta.update(meta_extra)
    history = ref.history if len(ref.history) else ref.final[None, :]
    return {"history": np.asarray(history), "tokens": tokens, "meta": {**ref.meta, "cached": cached, "key": key}}


def _reference_ls(trainer, tokens, ls_cfg) -> np.ndarray:
    from lsh_tune.lyapunov import lyapunov_spectrum

    with trainer.evaluation_weights():
        return lyapunov_spectrum(trainer.model, tokens, ls_cfg)


def _settings(cfg: SearchConfig, space: SearchSpace) -> TrialSettings:
    model_spec, train_spec = _specs(cfg)
    return TrialSettings(model_spec=model_spec.to_dict(), train_spec=train_spec.to_dict(), sparsity=cfg.sparsity,
                         rounds_every=cfg.rounds_every, max_epochs=cfg.resolved_max_epochs(), seed=cfg.seed,
                         hp_names=space.names, ls_config=cfg.ls_config().to_dict(), ls_embedding=cfg.ls_embedding,
                         ls_distance=cfg.ls_distance, state_dir=str(cfg.experiment_dir),
                         threads=max(1, int(math.ceil(cfg.cpus_per_trial))))


def check_experiment_dir(cfg: SearchConfig, resume: bool) -> SearchConfig:
    """The config to run: ``cfg`` for a new search, the saved one (storage/address from ``cfg``) on resume.

    Raises:
        LSHUsageError: resuming where there is nothing, or starting where a search exists.
    """
    path = cfg.experiment_dir / CONFIG_FILE
    if resume:
        if not path.exists() or not (cfg.experiment_dir / STATE_FILE).exists():
            raise LSHUsageError(f"nothing to resume in {cfg.experiment_dir} (no {CONFIG_FILE}/{STATE_FILE})")
        saved = SearchConfig.from_dict(json.loads(path.read_text()))
        return replace(saved, storage_path=cfg.storage_path, address=cfg.address, verbose=cfg.verbose)
    if path.exists() or (cfg.experiment_dir / STATE_FILE).exists():
        raise LSHUsageError(f"{cfg.experiment_dir} already holds a search: pass --resume or choose another --name")
    return cfg


def run_search(cfg: SearchConfig, *, resume: bool = False, space: SearchSpace = DEFAULT_SPACE) -> dict:
    """Run (or resume) a search and write the outputs; returns the summary (``best.json``).

    Raises:
        LSHUsageError: bad settings, a search already in the directory (without ``resume``), or
            nothing to resume.
    """
    import ray
    from ray import tune

    from lsh_tune.search._loggers import result_logger_callbacks
    from lsh_tune.search._ray import LSHScheduler, LSHSearcher

    cfg = check_experiment_dir(cfg, resume)
    exp = cfg.experiment_dir
    if not ray.is_initialized():
        ray.init(address=cfg.address, include_dashboard=False)
    _check_resources(cfg, ray.cluster_resources())
    corpus = _corpus(cfg)
    reference = prepare_reference(cfg, corpus) if cfg.metric == "ls" else None
    if resume:
        ledger = SearchLedger.open(exp)
    else:
        exp.mkdir(parents=True, exist_ok=True)
        atomic_write_text(exp / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=1))
        SearchLedger.forget(exp)
        kwargs = {"death_rate": cfg.grid_death_rate} if cfg.hpo == "grid" else {}
        ls_fit = None
        if reference is not None and cfg.ls_fit == "pool":
            ls_fit = PoolLSFit(reference["history"], cfg.ls_embedding, cfg.ls_distance, seed=cfg.seed)
        ledger = SearchLedger.create(cfg.pool_config(), cfg.hpo, space, exp, ls_fit=ls_fit, **kwargs)
    trainable = _trainable(cfg, ledger.generator.space, corpus, reference)
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(2, cfg.pool_size)))
    if resume and tune.Tuner.can_restore(str(exp)):
        tuner = tune.Tuner.restore(str(exp), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(scheduler=LSHScheduler(ledger), search_alg=LSHSearcher(ledger),
                                        num_samples=-1, reuse_actors=True),
            run_config=tune.RunConfig(name=cfg.name, storage_path=str(exp.parent), verbose=cfg.verbose,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      callbacks=result_logger_callbacks()))
    # num_to_keep=1: the mirror under candidates/ is always at least as new, and a paper-size
    # candidate's full state (weights, masks, averages, optimizer) is ~1 GB.
    tuner.fit()
    ledger = SearchLedger.open(exp)
    return write_outputs(cfg, ledger, corpus, reference)


def _trainable(cfg: SearchConfig, space: SearchSpace, corpus, reference: dict | None):
    from ray import tune

    ship = None if reference is None else {"history": reference["history"], "tokens": reference["tokens"]}
    return tune.with_resources(
        tune.with_parameters(candidate_trainable, settings=_settings(cfg, space), corpus=corpus, reference=ship),
        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})


def trainable_for(experiment_dir: str | os.PathLike):
    """The trainable of a saved search, for ``tune.Tuner.restore(experiment_dir, trainable_for(experiment_dir))``.

    The scheduler and searcher come back from Tune's own pickle and re-open the ledger from
    ``lsh/state.json``; after ``fit()`` call :func:`write_outputs` (or use ``--resume``, which
    does all of this).
    """
    exp = Path(experiment_dir).resolve()
    cfg = SearchConfig.from_dict(json.loads((exp / CONFIG_FILE).read_text()))
    cfg = replace(cfg, storage_path=str(exp.parent), name=exp.name)
    corpus = _corpus(cfg)
    reference = prepare_reference(cfg, corpus) if cfg.metric == "ls" else None
    return _trainable(cfg, SearchLedger.open(exp).generator.space, corpus, reference)


def _check_resources(cfg: SearchConfig, available: dict) -> None:
    """A local Ray instance must be able to place one trial (a cluster may still scale up)."""
    gpus = float(available.get("GPU", 0.0))
    if cfg.gpus_per_trial > gpus:
        msg = (f"gpus_per_trial={cfg.gpus_per_trial} but the Ray instance has {gpus:g} GPU(s); pass "
               "--gpus-per-trial 0 to train on CPU")
        if cfg.address in (None, "local"):
            raise LSHUsageError(msg)
        logger.warning("%s (waiting for the cluster to scale up)", msg)


def write_outputs(cfg: SearchConfig, ledger: SearchLedger, corpus, reference: dict | None) -> dict:
    """Results table, chosen configuration and the best model's standalone checkpoint."""
    exp = cfg.experiment_dir
    rows = ledger.pool.table()
    atomic_write_text(exp / "results.json", json.dumps(rows, indent=1))
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "cid", k))
    with open(exp / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    best = ledger.pool.best()
    summary: dict[str, Any] = {"experiment_dir": str(exp), "hpo": cfg.hpo, "metric": cfg.metric,
                               "phase": ledger.pool.phase, "rounds": ledger.pool.rounds,
                               "candidates": len(ledger.pool.candidates), "best": None}
    if reference is not None:
        summary["reference"] = {k: v for k, v in reference["meta"].items() if k in ("val_ppl", "test_ppl", "key",
                                                                                   "cached")}
    if best is not None:
        summary["best"] = {"cid": best.cid, "config": best.config, **(best.final or {})}
        export_best(cfg, best.cid, best.config, corpus, exp / "best_model.pt")
        summary["best_model"] = str(exp / "best_model.pt")
    atomic_write_text(exp / "best.json", json.dumps(summary, indent=1, default=float))
    return summary


def export_best(cfg: SearchConfig, cid: str, config: dict, corpus, path: Path) -> None:
    """Write the candidate's final weights (averaged if NT-ASGD switched) and masks as a plain dict."""
    from lsh_tune.search._trainable import build_candidate
    from lsh_tune.train.checkpoint import atomic_torch_save

    settings = replace(_settings(cfg, DEFAULT_SPACE), hp_names=tuple(config))
    trainer, hook = build_candidate(settings, {"cid": cid, **config}, corpus)
    trainer.load(candidate_state_path(cfg.experiment_dir, cid))
    model_spec, train_spec = _specs(cfg)
    with trainer.evaluation_weights():
        weights = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    atomic_torch_save({"format": "lsh_tune.sparse_state_dict/1", "model_spec": model_spec.to_dict(),
                       "train_spec": train_spec.to_dict(), "model": weights,
                       "masks": {k: m.detach().cpu().clone() for k, m in hook.masking.masks.items()},
                       "sparse_config": hook.config.to_dict(), "config": dict(config), "cid": cid,
                       "corpus": corpus.name, "vocab_size": len(corpus.vocab), "epoch": trainer.epoch}, path)
