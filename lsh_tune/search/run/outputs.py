"""What a finished search leaves in its experiment's storage (Ray-free; a directory or an
object-store URI, written through :class:`~lsh_tune.storage.Storage`; names: :mod:`lsh_tune.search.layout`).

* ``results.json`` / ``results.csv`` — one row per candidate (:meth:`CandidatePool.table`; list
  columns JSON-encoded in the CSV);
* ``best.json`` — the summary :func:`write_outputs` returns: the chosen configuration and its
  final metrics, the rounds, the dense reference's scores;
* ``best_model.pt`` — the best candidate's standalone sparse state dict with masks, loadable by
  ``lsh-tune ls --checkpoint`` / :func:`lsh_tune.lyapunov.load_checkpoint_model`.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search.candidate import build_candidate, trial_settings
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.keys import CID_KEY
from lsh_tune.search.layout import BEST_MODEL, RESULTS_CSV, RESULTS_JSON, STATE_NAME, SUMMARY_FILE, candidate_dir
from lsh_tune.storage import Storage

__all__ = ["write_outputs", "export_best", "BEST_MODEL", "SPARSE_STATE_FORMAT"]

#: ``format`` of the exported checkpoint.
SPARSE_STATE_FORMAT = "lsh_tune.sparse_state_dict/1"
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
        export_best(cfg, best.cid, best.config, corpus)
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


def export_best(cfg: SearchConfig, cid: str, config: dict, corpus, name: str = BEST_MODEL) -> None:
    """Write the candidate's final weights (averaged if NT-ASGD switched) and masks as a plain dict
    to ``name`` in the experiment's storage."""
    import torch

    exp = cfg.experiment()
    trainer, hook = build_candidate(trial_settings(cfg, tuple(config)), {CID_KEY: cid, **config}, corpus)
    with exp.local_file(f"{candidate_dir(cid)}/{STATE_NAME}") as path:
        trainer.load(path)
    model_spec, train_spec = cfg.specs()
    with trainer.evaluation_weights():
        weights = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    state = {"format": SPARSE_STATE_FORMAT, "model_spec": model_spec.to_dict(), "train_spec": train_spec.to_dict(),
             "model": weights, "masks": {k: m.detach().cpu().clone() for k, m in hook.masking.masks.items()},
             "sparse_config": hook.config.to_dict(), "config": dict(config), "cid": cid,
             "corpus": corpus.name, "vocab_size": len(corpus.vocab), "epoch": trainer.epoch}
    exp.write_with(name, lambda f: torch.save(state, f))
