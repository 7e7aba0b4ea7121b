"""What every trial of a search shares: the tokenised corpus and the dense reference's LS history.

The dense reference is trained (or loaded from ``reference_checkpoint``) once per (model, corpus,
seed, LS settings, training settings) and its LS history is cached under
``<storage_path>/reference_cache`` (see :class:`lsh_tune.lyapunov.ReferenceCache`), beside its
trained weights (``<key>.pt``). Ray-free.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from lsh_tune.search.config import SearchConfig

__all__ = ["prepare_reference", "search_corpus", "REFERENCE_CACHE"]

logger = logging.getLogger(__name__)
#: The reference cache, relative to the storage path (shared by the searches stored there).
REFERENCE_CACHE = "reference_cache"
_CORPORA: dict[tuple, Any] = {}


def search_corpus(cfg: SearchConfig):
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
    import torch

    from lsh_tune.lyapunov import ReferenceCache, reference_key, validation_tokens

    model_spec, train_spec = cfg.specs()
    ls_cfg = cfg.ls_config()
    tokens = validation_tokens(corpus, k=ls_cfg.k, length=ls_cfg.total_steps)
    epochs = cfg.reference_epochs or cfg.resolved_max_epochs()
    extra = {"train_spec": train_spec.to_dict(), "epochs": epochs, "vocab_size": len(corpus.vocab),
             "max_tokens": cfg.max_tokens, "checkpoint": cfg.reference_checkpoint}
    key = reference_key(model_spec, corpus.name, cfg.seed, ls_cfg, extra=extra)
    cache = ReferenceCache(Path(os.path.expanduser(cfg.storage_path)).resolve() / REFERENCE_CACHE)
    scores: dict[str, float] = {}  # val/test perplexity of a reference trained here

    def compute():
        torch.manual_seed(cfg.seed)
        if cfg.reference_checkpoint:
            return _checkpoint_reference(cfg.reference_checkpoint, tokens, ls_cfg)
        return _train_reference(cfg, corpus, tokens, epochs, cache.path(key).with_suffix(".pt"), scores)

    ref, cached = cache.get_or_compute(key, compute, meta={"extra": extra, "key": key})
    if scores:
        cache.save(key, ref.history, ref.final, {**ref.meta, **scores})
        ref.meta.update(scores)
    history = ref.history if len(ref.history) else ref.final[None, :]
    return {"history": np.asarray(history), "tokens": tokens, "meta": {**ref.meta, "cached": cached, "key": key}}


def _checkpoint_reference(checkpoint: str, tokens, ls_cfg) -> tuple[np.ndarray, np.ndarray]:
    """(empty history, final spectrum) of a dense checkpoint."""
    from lsh_tune.lyapunov import load_checkpoint_model, lyapunov_spectrum

    model, _ = load_checkpoint_model(checkpoint)
    return np.zeros((0, 0)), lyapunov_spectrum(model, tokens, ls_cfg)


def _train_reference(cfg: SearchConfig, corpus, tokens, epochs: int, weights_path: Path,
                     scores: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Train the dense reference for ``epochs``: ((epochs, N) spectra, one per epoch; the last one).

    Saves its weights to ``weights_path`` and puts its ``val_ppl``/``test_ppl`` into ``scores``.
    """
    from lsh_tune.models import build_model
    from lsh_tune.train import Trainer, perplexity

    model_spec, train_spec = cfg.specs()
    ls_cfg = cfg.ls_config()
    model = build_model(model_spec, len(corpus.vocab))
    trainer = Trainer(model, corpus, train_spec, seed=cfg.seed, device="cpu", max_epochs=epochs)
    history = []
    for _ in range(epochs):
        m = trainer.train_epoch()
        history.append(_reference_ls(trainer, tokens, ls_cfg))
        logger.info("dense reference epoch %d: val_ppl %.2f", m["epoch"], m["val_ppl"])
    test_loss = trainer.evaluate("test")
    trainer.save(weights_path, model_spec=model_spec.to_dict(), corpus=corpus.name, vocab_size=len(corpus.vocab))
    scores["val_ppl"] = float(m["val_ppl"])
    scores["test_ppl"] = float(perplexity(test_loss))
    return np.stack(history), history[-1]


def _reference_ls(trainer, tokens, ls_cfg) -> np.ndarray:
    from lsh_tune.lyapunov import lyapunov_spectrum

    with trainer.evaluation_weights():
        return lyapunov_spectrum(trainer.model, tokens, ls_cfg)
