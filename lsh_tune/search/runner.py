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

from lsh_tune.errors import LSHUsageError
from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search._ls_fit import PoolLSFit
from lsh_tune.search._trainable import TrialSettings, candidate_state_path, candidate_trainable
from lsh_tune.search.config import CONFIG_FILE, SearchConfig, check_experiment_dir
from lsh_tune.space import DEFAULT_SPACE, SearchSpace
from lsh_tune.storage import atomic_write_text

__all__ = ["SearchConfig", "run_search", "prepare_reference", "export_best", "check_experiment_dir",
           "trainable_for", "write_outputs", "CONFIG_FILE"]

logger = logging.getLogger(__name__)


_CORPORA: dict[tuple, Any] = {}


def _corpus(cfg: SearchConfig):
    """The corpus of ``cfg``, tokenised once per process (searches in one process share it)."""
    from lsh_tune.data import load_corpus

    key = (cfg.corpus, cfg.data_dir, cfg.max_tokens)
    if key not in _CORPORA:
        _CORPORA.clear()
        _CORPORA[key] = load_corpus(cfg.corpus, cfg.data_dir, max_tokens=cfg.max_tokens)
    return _CORPORA[key]


def prepare_reference(cfg: SearchConfig, corpus) -> dict:
    """Train (or load) the dense reference once and return its cached LS history and LS tokens.

    Returns:
        ``{"history": (E, N) array (per-epoch spectra then the final one), "tokens": (T, K),
        "meta": {...}}``.
    """
    from lsh_tune.lyapunov import ReferenceCache, lyapunov_spectrum, reference_key, validation_tokens
    from lsh_tune.models import build_model
    from lsh_tune.train import Trainer

    model_spec, train_spec = cfg.specs()
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
    model_spec, train_spec = cfg.specs()
    return TrialSettings(model_spec=model_spec.to_dict(), train_spec=train_spec.to_dict(), sparsity=cfg.sparsity,
                         rounds_every=cfg.rounds_every, max_epochs=cfg.resolved_max_epochs(), seed=cfg.seed,
                         hp_names=space.names, ls_config=cfg.ls_config().to_dict(), ls_embedding=cfg.ls_embedding,
                         ls_distance=cfg.ls_distance, state_dir=str(cfg.experiment_dir),
                         threads=max(1, int(math.ceil(cfg.cpus_per_trial))))


def run_search(cfg: SearchConfig, *, resume: bool = False, space: SearchSpace | None = None) -> dict:
    """Run (or resume) a search and write the outputs; returns the summary (``best.json``).

    Raises:
        LSHUsageError: bad settings, a search already in the directory (without ``resume``), or
            nothing to resume.
    """
    import ray
    from ray import tune

    from lsh_tune.search._loggers import result_logger_callbacks
    from lsh_tune.search._ray import LSHScheduler, LSHSearcher

    if space is not None:
        cfg = replace(cfg, space=space)
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
        cfg.save()
        SearchLedger.forget(exp)
        kwargs = {"death_rate": cfg.grid_death_rate} if cfg.hpo == "grid" else {}
        ls_fit = None
        if reference is not None and cfg.ls_fit == "pool":
            ls_fit = PoolLSFit(reference["history"], cfg.ls_space())
        ledger = SearchLedger.create(cfg.pool_config(), cfg.hpo, cfg.space, exp, ls_fit=ls_fit, **kwargs)
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
    cfg = replace(SearchConfig.load(exp), storage_path=str(exp.parent), name=exp.name)
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
    model_spec, train_spec = cfg.specs()
    with trainer.evaluation_weights():
        weights = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    atomic_torch_save({"format": "lsh_tune.sparse_state_dict/1", "model_spec": model_spec.to_dict(),
                       "train_spec": train_spec.to_dict(), "model": weights,
                       "masks": {k: m.detach().cpu().clone() for k, m in hook.masking.masks.items()},
                       "sparse_config": hook.config.to_dict(), "config": dict(config), "cid": cid,
                       "corpus": corpus.name, "vocab_size": len(corpus.vocab), "epoch": trainer.epoch}, path)
