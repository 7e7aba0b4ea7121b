"""What a finished search leaves in its experiment directory (Ray-free).

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
from pathlib import Path
from typing import Any

from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search.candidate import build_candidate, candidate_state_path, trial_settings
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.keys import CID_KEY
from lsh_tune.storage import atomic_write_text

__all__ = ["write_outputs", "export_best", "BEST_MODEL", "SPARSE_STATE_FORMAT"]

BEST_MODEL = "best_model.pt"
#: ``format`` of the exported checkpoint.
SPARSE_STATE_FORMAT = "lsh_tune.sparse_state_dict/1"
_REFERENCE_SUMMARY = ("val_ppl", "test_ppl", "key", "cached")


def write_outputs(cfg: SearchConfig, ledger: SearchLedger, corpus, reference: dict | None) -> dict:
    """Results table, chosen configuration and the best model's standalone checkpoint; returns the summary."""
    exp = cfg.experiment_dir
    pool = ledger.pool
    _write_table(exp, pool.table())
    best = pool.best()
    summary: dict[str, Any] = {"experiment_dir": str(exp), "hpo": cfg.hpo, "metric": cfg.metric,
                               "phase": pool.phase, "rounds": pool.rounds, "candidates": len(pool.candidates),
                               "best": None}
    if reference is not None:
        summary["reference"] = {k: v for k, v in reference["meta"].items() if k in _REFERENCE_SUMMARY}
    if best is not None:
        summary["best"] = {CID_KEY: best.cid, "config": best.config, **(best.final or {})}
        export_best(cfg, best.cid, best.config, corpus, exp / BEST_MODEL)
        summary["best_model"] = str(exp / BEST_MODEL)
    atomic_write_text(exp / "best.json", json.dumps(summary, indent=1, default=float))
    return summary


def _write_table(exp: Path, rows: list[dict]) -> None:
    """``results.json`` and ``results.csv`` (``cid`` first, then the columns by name)."""
    atomic_write_text(exp / "results.json", json.dumps(rows, indent=1))
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != CID_KEY, k))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    atomic_write_text(exp / "results.csv", buf.getvalue())


def export_best(cfg: SearchConfig, cid: str, config: dict, corpus, path: Path) -> None:
    """Write the candidate's final weights (averaged if NT-ASGD switched) and masks as a plain dict."""
    from lsh_tune.train.checkpoint import atomic_torch_save

    trainer, hook = build_candidate(trial_settings(cfg, tuple(config)), {CID_KEY: cid, **config}, corpus)
    trainer.load(candidate_state_path(cfg.experiment_dir, cid))
    model_spec, train_spec = cfg.specs()
    with trainer.evaluation_weights():
        weights = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    atomic_torch_save({"format": SPARSE_STATE_FORMAT, "model_spec": model_spec.to_dict(),
                       "train_spec": train_spec.to_dict(), "model": weights,
                       "masks": {k: m.detach().cpu().clone() for k, m in hook.masking.masks.items()},
                       "sparse_config": hook.config.to_dict(), "config": dict(config), "cid": cid,
                       "corpus": corpus.name, "vocab_size": len(corpus.vocab), "epoch": trainer.epoch}, path)
