"""What every trial of a search shares — the tokenised corpus — and the dense reference (Ray-free).

The dense reference is trained by a trial of the search itself (``cid`` =
:data:`~lsh_tune.search.keys.REFERENCE_CID`, same resources as a candidate, see
:mod:`lsh_tune.search.tune.trainable`), never on the driver: :func:`train_reference` is that trial's
work. Its files live in the reference cache ``<storage_path>/reference_cache/`` (any
:class:`~lsh_tune.storage.Storage`; names: :mod:`lsh_tune.search.layout`), keyed by everything the reference depends on
(:func:`reference_plan`: model spec, training settings, epochs, corpus and its slice, seed, LS
settings, or the dense checkpoint used instead of training):

* ``<key>.npz`` — the finished reference (:class:`lsh_tune.lyapunov.ReferenceCache`): its LS history
  (one spectrum per epoch, ``history[0]`` at initialisation), the final LS, the final
  validation/test perplexities; a second search (or a resume) with the same key reuses it;
* ``<key>/state.pt`` + ``<key>/state.json`` — the training state after the newest epoch (model,
  optimizer, NT-ASGD averages, RNG, the LS history so far), written after every epoch, so a
  reference trial that is killed resumes where it stopped; when done it is the trained dense
  model (``lsh-tune ls --checkpoint``, or ``--reference-checkpoint`` of another search);
* ``<key>/epochs/`` — one record per trained reference epoch (:func:`read_reference_log`);
* ``<key>.lease.json`` — while a worker trains it: who (host, pid, heartbeat), so that a second
  search with the same key waits for it and loads it instead of training it too
  (:func:`reference_lease`, :mod:`lsh_tune.search.run._lease`).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from lsh_tune.search.config import SearchConfig
from lsh_tune.search.keys import REFERENCE_EPOCHS_KEY, REFERENCE_LS_KEYS
from lsh_tune.search.layout import EPOCH_LOG, LEASE_SUFFIX, META_NAME, REFERENCE_CACHE, STATE_NAME
from lsh_tune.search.run._lease import Lease
from lsh_tune.storage import Storage

__all__ = ["REFERENCE_CACHE", "ReferencePlan", "prepare_reference", "read_reference_log", "reference_history",
           "reference_lease", "reference_plan", "search_corpus", "train_reference"]

logger = logging.getLogger(__name__)
_CORPORA: dict[tuple, Any] = {}


def search_corpus(cfg: SearchConfig):
    """The corpus of ``cfg``, tokenised once per process (searches in one process share it)."""
    from lsh_tune.data import load_corpus

    cut = (None, None) if cfg.setting is None else (cfg.setting["train_tokens"], cfg.setting["eval_tokens"])
    key = (cfg.corpus, cfg.data_dir, cfg.max_tokens, cut)
    if key not in _CORPORA:
        _CORPORA.clear()
        _CORPORA[key] = load_corpus(cfg.corpus, cfg.data_dir, max_tokens=cfg.max_tokens).sliced(*cut)
    return _CORPORA[key]


@dataclass(frozen=True)
class ReferencePlan:
    """The dense reference of a search: what it is, where its files go (shipped to its trial).

    Args:
        key: its cache key (:func:`lsh_tune.lyapunov.reference_key`).
        cache: location of the reference cache (absolute directory or object-store URI).
        model_spec, train_spec: ``to_dict()`` of the architecture and the optimiser settings.
        epochs: dense training epochs.
        seed: initialisation and training seed.
        ls_config: :meth:`LSConfig.to_dict` of every spectrum.
        checkpoint: a dense checkpoint (path or URI the trial can read) used instead of training.
        corpus: ``{"name", "max_tokens", "tokens": [train, valid, test], "vocab_size"}``.
    """

    key: str
    cache: str
    model_spec: dict
    train_spec: dict
    epochs: int
    seed: int
    ls_config: dict
    checkpoint: str | None = None
    corpus: dict | None = None

    def store(self) -> Storage:
        """The reference cache."""
        return Storage(self.cache)

    def source(self) -> dict:
        """Where the ledger finds the finished reference (``SearchLedger.create(reference_source=)``)."""
        return {"cache": self.cache, "key": self.key}


def reference_plan(cfg: SearchConfig, corpus) -> ReferencePlan:
    """The reference of ``cfg`` on ``corpus`` and its key: a change in anything it depends on is a new key."""
    from lsh_tune.lyapunov import reference_key

    model_spec, train_spec = cfg.specs()
    ls_cfg = cfg.ls_config()
    epochs = cfg.reference_epochs or cfg.resolved_max_epochs()
    about = {"name": corpus.name, "max_tokens": cfg.max_tokens, "vocab_size": len(corpus.vocab),
             "tokens": [int(corpus.train.numel()), int(corpus.valid.numel()), int(corpus.test.numel())]}
    extra = {"train_spec": train_spec.to_dict(), "epochs": epochs, "corpus": about,
             "checkpoint": cfg.reference_checkpoint}
    key = reference_key(model_spec, corpus.name, cfg.seed, ls_cfg, extra=extra)
    return ReferencePlan(key, cfg.storage().child(REFERENCE_CACHE).uri, model_spec.to_dict(), train_spec.to_dict(),
                         epochs, cfg.seed, ls_cfg.to_dict(), cfg.reference_checkpoint, about)


def prepare_reference(cfg: SearchConfig, corpus) -> dict:
    """What the driver knows of the reference without training anything (cheap: no model is built).

    Returns:
        ``{"history": (E', N) spectra of the finished reference, or None while it is not trained,
        "tokens": (T, K) LS input tokens, "plan": ReferencePlan, "meta": cache metadata}``.
    """
    from lsh_tune.lyapunov import ReferenceCache, validation_tokens

    ls_cfg = cfg.ls_config()
    plan = reference_plan(cfg, corpus)
    tokens = validation_tokens(corpus, k=ls_cfg.k, length=ls_cfg.total_steps)
    ref = ReferenceCache(plan.cache).load(plan.key)
    meta = {"key": plan.key, "cached": ref is not None, **({} if ref is None else ref.meta)}
    return {"history": None if ref is None else ref.spectra(), "tokens": tokens, "plan": plan, "meta": meta}


def reference_history(reference: dict) -> np.ndarray | None:
    """In a trial: the reference's LS history, read from the cache once its trial has written it
    (kept in ``reference["history"]``); ``None`` before."""
    if reference.get("history") is None and reference.get("plan") is not None:
        from lsh_tune.lyapunov import ReferenceCache

        plan = reference["plan"]
        ref = ReferenceCache(plan.cache).load(plan.key)
        reference["history"] = None if ref is None else ref.spectra()
    return reference.get("history")


def read_reference_log(plan: ReferencePlan) -> list[dict]:
    """Every trained epoch of the reference ``plan`` (whatever search trained it), oldest first:
    ``epoch``, ``start``/``time`` (wall clock), ``pid``, ``val_ppl`` and the trial's tags."""
    return plan.store().read_records(f"{plan.key}/{EPOCH_LOG}")


def reference_lease(plan: ReferencePlan, *, timeout_s: float | None = None,
                    say: Callable[[str], None] | None = None) -> Lease:
    """The lease ``<key>.lease.json`` that lets one worker at a time train the reference ``plan``
    (:class:`~lsh_tune.search.run._lease.Lease`; stale after ``timeout_s`` seconds without a heartbeat,
    default ``$LSH_REFERENCE_LEASE_TIMEOUT_S`` or 120 s)."""
    return Lease(plan.store(), f"{plan.key}{LEASE_SUFFIX}", what=f"dense reference {plan.key}", timeout_s=timeout_s,
                 say=say)


def train_reference(plan: ReferencePlan, corpus, *, device: str = "cpu", tags: dict | None = None,
                    on_epoch: Callable[[dict], None] | None = None, lease_timeout_s: float | None = None,
                    say: Callable[[str], None] | None = None):
    """Train the dense reference of ``plan`` (or evaluate its checkpoint), resuming from its newest
    saved epoch, and cache it; returns the cached :class:`~lsh_tune.lyapunov.ReferenceLS`.

    After every epoch: the LS (evaluation weights), the training state to ``<key>/state.pt``, one
    record to ``<key>/epochs/`` (with ``tags``), then ``on_epoch(progress)`` with ``epoch``,
    ``epochs``, ``val_ppl``, ``val_loss``, ``train_loss``, ``epoch_time_s``, ``ls_time_s`` and the
    epoch's spectrum summarised (:func:`reference_ls_summary`: its LS curve while it trains). A cached
    reference is returned at once.

    Only the holder of :func:`reference_lease` trains (released on return and on error): while
    another live worker holds it, this one says so in one line (``say``, default stdout) and waits
    for the cached reference, which it then returns without training; a stale lease (its holder's
    process gone, or no heartbeat for ``lease_timeout_s`` seconds) is taken over, and the training
    resumes from the newest epoch the previous holder saved.
    """
    from lsh_tune.lyapunov import ReferenceCache

    cache = ReferenceCache(plan.cache)
    hit = cache.load(plan.key)
    if hit is not None:
        return hit
    lease = reference_lease(plan, timeout_s=lease_timeout_s, say=say)
    hit = lease.wait_for(lambda: cache.load(plan.key))
    if hit is not None:
        return hit
    try:
        if plan.checkpoint:
            history, final, scores = _checkpoint_reference(plan, corpus, device)
        else:
            history, final, scores = _train(plan, corpus, device, dict(tags or {}), on_epoch)
        meta = {"key": plan.key, "plan": asdict(plan), **scores}
        cache.save(plan.key, history, final, meta)
        return cache.load(plan.key)
    finally:
        lease.release()


def reference_ls_summary(spectrum: np.ndarray) -> dict[str, float]:
    """:data:`~lsh_tune.search.keys.REFERENCE_LS_KEYS` of one spectrum (N,) (:func:`~lsh_tune.lyapunov.ls_summary`):
    the reference's LS curve, small enough for every epoch's event (the full spectra are cached when it is done)."""
    from lsh_tune.lyapunov.spectrum import ls_summary

    stats = ls_summary(np.asarray(spectrum, dtype=np.float64))
    return {key: float(stats[key[len("ls_"):]]) for key in REFERENCE_LS_KEYS}


def _tokens(plan: ReferencePlan, corpus):
    from lsh_tune.lyapunov import LSConfig, validation_tokens

    cfg = LSConfig(**plan.ls_config)
    return validation_tokens(corpus, k=cfg.k, length=cfg.total_steps), cfg


def _spectrum(trainer, tokens, ls_cfg) -> np.ndarray:
    from lsh_tune.lyapunov import lyapunov_spectrum

    with trainer.evaluation_weights():
        return lyapunov_spectrum(trainer.model, tokens.to(trainer.device), ls_cfg)


def _trainer(plan: ReferencePlan, corpus, device: str, model=None):
    from lsh_tune.models import ModelSpec, TrainSpec, build_model
    from lsh_tune.train import Trainer
    from lsh_tune.train.trainer import seed_everything

    seed_everything(plan.seed)
    model = build_model(ModelSpec.from_dict(plan.model_spec), len(corpus.vocab)) if model is None else model
    return Trainer(model, corpus, TrainSpec(**plan.train_spec), seed=plan.seed, device=device,
                   max_epochs=plan.epochs)


def _train(plan: ReferencePlan, corpus, device: str, tags: dict, on_epoch) -> tuple[np.ndarray, np.ndarray, dict]:
    """(history (epochs + 1, N), final LS, {val_ppl, test_ppl}) of the trained reference."""
    from lsh_tune.search.candidate import save_trainer
    from lsh_tune.train import perplexity

    store, tokens_cfg = plan.store(), _tokens(plan, corpus)
    trainer = _trainer(plan, corpus, device)
    history = _resume(trainer, store, plan.key)
    if history is None:  # its saved state does not read back: train again from scratch (same result)
        trainer, history = _trainer(plan, corpus, device), []
    if not history:
        history = [_spectrum(trainer, *tokens_cfg)]  # epoch 0: at initialisation
    extras = {"model_spec": plan.model_spec, "corpus": corpus.name, "vocab_size": len(corpus.vocab),
              "max_tokens": (plan.corpus or {}).get("max_tokens")}
    m = {"val_loss": trainer.state.val_history[-1]} if trainer.state.val_history else {}
    while trainer.epoch < plan.epochs:
        start = time.time()
        m = trainer.train_epoch()
        t0 = time.perf_counter()
        history.append(_spectrum(trainer, *tokens_cfg))
        ls_time = time.perf_counter() - t0
        save_trainer(trainer, store, f"{plan.key}/{STATE_NAME}", lsh={"ls_history": np.stack(history)}, **extras)
        store.write_json(f"{plan.key}/{META_NAME}", {"epoch": trainer.epoch, "key": plan.key}, indent=None)
        progress = {"epoch": trainer.epoch, REFERENCE_EPOCHS_KEY: plan.epochs, "val_ppl": m["val_ppl"],
                    "val_loss": m["val_loss"], "train_loss": m["train_loss"], "epoch_time_s": m["epoch_time_s"],
                    "ls_time_s": ls_time, **reference_ls_summary(history[-1])}
        store.append_record(f"{plan.key}/{EPOCH_LOG}", {**progress, "start": start, "time": time.time(),
                                                    "pid": os.getpid(), **tags})
        logger.info("dense reference epoch %d/%d: val_ppl %.2f (%.1f s + LS %.1f s)", trainer.epoch, plan.epochs,
                    m["val_ppl"], m["epoch_time_s"], ls_time)
        if on_epoch is not None:
            on_epoch(progress)
    val_loss = m["val_loss"] if "val_loss" in m else trainer.evaluate("valid")
    scores = {"val_ppl": float(perplexity(val_loss)), "test_ppl": float(perplexity(trainer.evaluate("test"))),
              "epochs": plan.epochs, "checkpoint": store.uri_of(f"{plan.key}/{STATE_NAME}")}
    return np.stack(history), history[-1], scores


def _resume(trainer, store: Storage, key: str) -> list[np.ndarray] | None:
    """Load the newest saved epoch of reference ``key`` into ``trainer``; its LS history so far ([] if
    none; ``None`` if the saved state is corrupt or truncated: ``trainer`` must then be rebuilt)."""
    from lsh_tune.errors import LSHUsageError
    from lsh_tune.search.candidate import read_state_meta

    if read_state_meta(store, key) is None:
        return []
    try:
        with store.local_file(f"{key}/{STATE_NAME}") as path:
            saved = trainer.load(path)
    except LSHUsageError as e:
        logger.warning("dense reference: %s; training it again from epoch 0", e)
        return None
    logger.info("dense reference: resuming after epoch %d", trainer.epoch)
    return list(np.asarray(saved["lsh"]["ls_history"]))


def _checkpoint_reference(plan: ReferencePlan, corpus, device: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(no history, the LS of the dense checkpoint, its val/test perplexities on ``corpus``)."""
    from lsh_tune.errors import LSHUsageError
    from lsh_tune.lyapunov import load_checkpoint_model
    from lsh_tune.train import perplexity

    store, name = Storage.split(plan.checkpoint)
    with store.local_file(name) as path:
        model, ckpt = load_checkpoint_model(path)
    if int(ckpt["vocab_size"]) != len(corpus.vocab) or dict(ckpt["model_spec"]) != dict(plan.model_spec):
        raise LSHUsageError(f"reference_checkpoint={plan.checkpoint!r} is a {ckpt['model_spec'].get('model')} "
                            f"with vocabulary {ckpt['vocab_size']}; the search needs {plan.model_spec} with "
                            f"vocabulary {len(corpus.vocab)}")
    trainer = _trainer(plan, corpus, device, model=model)
    final = _spectrum(trainer, *_tokens(plan, corpus))
    scores = {"val_ppl": float(perplexity(trainer.evaluate("valid"))),
              "test_ppl": float(perplexity(trainer.evaluate("test"))), "epochs": 0, "checkpoint": plan.checkpoint}
    return np.zeros((0, final.shape[0])), final, scores
