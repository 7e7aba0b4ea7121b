"""What a finished search leaves in its experiment's storage (Ray-free; a directory or an
object-store URI, written through :class:`~lsh_tune.storage.Storage`; names: :mod:`lsh_tune.search.layout`).

* ``results.json`` / ``results.csv`` — one row per candidate (:meth:`CandidatePool.table`; list
  columns JSON-encoded in the CSV);
* ``best.json`` — the summary :func:`write_outputs` returns: the chosen configuration and its
  final metrics, the rounds, the dense reference's scores;
* ``best_model.pt`` — the best candidate's weights, readable by torch alone
  (``torch.load(path, weights_only=True)``): a plain dict whose ``state_dict`` holds every masked
  weight as a ``torch.sparse_csr`` tensor (int32 indices) whose stored pattern is its mask and every
  other tensor dense (:func:`lsh_tune.sparse.sparse_state_dict`), beside the metadata of
  :func:`export_best`; loadable by ``lsh-tune ls --checkpoint``, :func:`load_best_model` and
  :func:`lsh_tune.lyapunov.load_checkpoint_model`;
* ``best_model.json`` — that metadata alone, as JSON.
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import TYPE_CHECKING, Any

from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search.candidate import build_candidate, trial_settings
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.keys import CID_KEY
from lsh_tune.search.layout import (BEST_MODEL, BEST_MODEL_SPEC, RESULTS_CSV, RESULTS_JSON, STATE_NAME, SUMMARY_FILE,
                                   candidate_dir)
from lsh_tune.storage import Storage

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["write_outputs", "export_best", "load_best_model", "BEST_MODEL", "BEST_MODEL_SPEC"]

_REFERENCE_SUMMARY = ("val_ppl", "test_ppl", "key", "cached", "epochs", "checkpoint")


def write_outputs(cfg: SearchConfig, ledger: SearchLedger, corpus, reference: dict | None) -> dict:
    """Results table, chosen configuration and the best model's standalone checkpoint; returns the summary."""
    exp = cfg.experiment()
    pool = ledger.pool
    _write_table(exp, pool.table())
    best = pool.best()
    summary: dict[str, Any] = {"experiment_dir": exp.uri_of(), "hpo": cfg.hpo, "metric": cfg.metric,
                               "phase": pool.phase, "rounds": pool.rounds, "candidates": len(pool.candidates),
                               "best": None}
    if reference is not None:
        summary["reference"] = _reference_summary(reference)
    if best is not None:
        summary["best"] = {CID_KEY: best.cid, "config": best.config, **(best.final or {})}
        export_best(cfg, best.cid, best.config, corpus, metrics=best.final)
        summary["best_model"] = exp.uri_of(BEST_MODEL)
    exp.write_json(SUMMARY_FILE, summary, default=float)
    return summary


def _reference_summary(reference: dict) -> dict:
    """The dense reference's scores as cached now (it may have been trained during the search);
    ``cached``: whether it was already cached when the search (or this resume) started."""
    from lsh_tune.lyapunov import ReferenceCache

    plan = reference["plan"]
    ref = ReferenceCache(plan.cache).load(plan.key)
    meta = {**reference["meta"], **({} if ref is None else ref.meta), "cached": reference["meta"].get("cached")}
    return {k: v for k, v in meta.items() if k in _REFERENCE_SUMMARY}


def _write_table(exp: Storage, rows: list[dict]) -> None:
    """``results.json`` and ``results.csv`` (``cid`` first, then the columns by name)."""
    exp.write_json(RESULTS_JSON, rows)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != CID_KEY, k))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    exp.write_text(RESULTS_CSV, buf.getvalue())


def export_best(cfg: SearchConfig, cid: str, config: dict, corpus, name: str = BEST_MODEL,
                spec_name: str = BEST_MODEL_SPEC, *, metrics: dict | None = None) -> dict:
    """Write candidate ``cid``'s final weights (the NT-ASGD averages if averaging started) to ``name``
    and their metadata to ``spec_name`` in the experiment's storage, each all-or-nothing.

    ``name`` is ``torch.save`` of ``{"state_dict": ..., **metadata}``: every masked weight a
    ``torch.sparse_csr`` tensor with int32 indices whose stored entries are its mask's active
    positions (an active weight that is 0 is stored as an explicit 0), everything else dense
    (:func:`lsh_tune.sparse.sparse_state_dict`); only tensors and plain data, so
    ``torch.load(path, weights_only=True)`` reads it without lsh_tune. The metadata (also the JSON
    of ``spec_name``): ``format`` (:data:`lsh_tune.sparse.SPARSE_CSR_FORMAT`), ``state_file``,
    ``model_spec`` (:meth:`ModelSpec.to_dict`; its ``model`` is the registered name), ``train_spec``,
    ``vocab_size``, ``corpus``/``corpus_dir``/``tokens`` (the token counts of the splits the
    metrics were measured on), ``tensors`` (state-dict key → ``parameter``, ``shape``, ``numel``,
    ``nnz``, ``density`` = nnz / numel), ``density`` (stored entries / entries over the masked
    parameters), ``sparsity`` (the target s), ``sparse_config``, ``config``, ``cid``, ``epoch``,
    ``averaged`` (whether NT-ASGD averages were exported) and ``metrics`` (``metrics`` as given:
    the candidate's final ``val_ppl``/``test_ppl``/... at search time, or ``None``).

    Returns:
        the metadata.
    """
    import torch

    from lsh_tune.sparse import SPARSE_CSR_FORMAT, sparse_state_dict

    exp = cfg.experiment()
    trainer, hook = build_candidate(trial_settings(cfg, tuple(config)), {CID_KEY: cid, **config}, corpus)
    with exp.local_file(f"{candidate_dir(cid)}/{STATE_NAME}") as path:
        trainer.load(path)
    model_spec, train_spec = cfg.specs()
    with trainer.evaluation_weights():
        state, tensors = sparse_state_dict(trainer.model, hook.masking.masks)
    stored = {t["parameter"]: (t["nnz"], t["numel"]) for t in tensors.values()}
    meta = {"format": SPARSE_CSR_FORMAT, "state_file": name, "model_spec": model_spec.to_dict(),
            "train_spec": train_spec.to_dict(), "vocab_size": len(corpus.vocab), "corpus": corpus.name,
            "corpus_dir": str(corpus.directory), "tokens": corpus.info()["tokens"], "tensors": tensors,
            "density": sum(n for n, _ in stored.values()) / sum(t for _, t in stored.values()),
            "sparsity": cfg.sparsity, "sparse_config": hook.config.to_dict(), "config": dict(config), "cid": cid,
            "epoch": trainer.epoch, "averaged": trainer.averager is not None,
            "metrics": None if metrics is None else dict(metrics)}
    meta = json.loads(json.dumps(meta, default=float))  # plain JSON types: the same in both files, weights_only-safe
    exp.write_with(name, lambda f: torch.save({"state_dict": state, **meta}, f))
    exp.write_json(spec_name, meta, default=float)
    return meta


def load_best_model(location: str | os.PathLike) -> nn.Module:
    """The model of ``best_model.pt`` at ``location`` (a local path or an object-store URI): the
    registered model built from its spec, its masks applied (pruned weights exactly 0), on CPU, in
    eval mode — a plain ``nn.Module``. A former ``lsh_tune.sparse_state_dict/1`` file reads too.

    Raises:
        LSHUsageError: the file is missing, unreadable or not a model checkpoint (naming it).
    """
    from lsh_tune.lyapunov import load_checkpoint_model

    model, _ = load_checkpoint_model(location, map_location="cpu")
    return model.cpu().eval()
