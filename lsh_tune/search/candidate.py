"""One candidate outside Ray: its settings, how it is built, and where its state lives (Ray-free).

Files of candidate ``cid`` under the experiment directory: ``candidates/<cid>/state.pt`` (the
latest full training state, :meth:`lsh_tune.train.Trainer.save`), ``state.json`` (``{"epoch",
"cid"}`` of that state) and ``ls_history.json`` (its spectra, one per round boundary; −inf
exponents as JSON ``-Infinity``); every trained epoch of the search is a line of
``epochs.jsonl``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lsh_tune.search._ls_fit import LSSpace
from lsh_tune.search.keys import CID_KEY
from lsh_tune.seeds import derive_seed
from lsh_tune.storage import atomic_write_json

if TYPE_CHECKING:  # pragma: no cover
    from lsh_tune.search.config import SearchConfig

__all__ = ["TrialSettings", "trial_settings", "build_candidate", "candidate_state_path", "read_epoch_log",
           "read_state_meta", "save_state", "STATE_NAME", "META_NAME", "LS_NAME", "EPOCH_LOG"]

STATE_NAME = "state.pt"
META_NAME = "state.json"
LS_NAME = "ls_history.json"  # the candidate's spectra, one per round boundary
EPOCH_LOG = "epochs.jsonl"


@dataclass(frozen=True)
class TrialSettings:
    """Everything a candidate needs besides its hyperparameters (shipped once to every trial).

    Args:
        model_spec: :meth:`ModelSpec.to_dict` of the architecture.
        train_spec: :meth:`TrainSpec.to_dict` of the optimiser settings.
        sparsity: target sparsity s (fixed input of the search).
        rounds_every: E, epochs per round.
        max_epochs: total epochs of a finalist.
        seed: search seed; each candidate trains with ``crc32(seed, cid)``.
        hp_names: names of the hyperparameters in a trial config (from the search space).
        ls_config: :meth:`LSConfig.to_dict` of the spectrum computation.
        ls_space: the LS space of the trial's own ``ls_distance`` (the search's).
        state_dir: experiment directory for mirrors and the epoch log (``None``: Tune's
            checkpoints only, e.g. when the storage is an object-store URI).
        threads: torch CPU threads per trial (``cpus_per_trial``).
        sparse_kwargs: extra :class:`~lsh_tune.sparse.SparseConfig` fields (``init_scale`` ...).
    """

    model_spec: dict
    train_spec: dict
    sparsity: float
    rounds_every: int
    max_epochs: int
    seed: int = 0
    hp_names: tuple[str, ...] = ("sparse_init", "death", "redistribution", "growth", "death_rate")
    ls_config: dict = field(default_factory=dict)
    ls_space: LSSpace = LSSpace()
    state_dir: str | None = None
    threads: int = 1
    sparse_kwargs: dict = field(default_factory=dict)


def trial_settings(cfg: "SearchConfig", hp_names: tuple[str, ...]) -> TrialSettings:
    """The :class:`TrialSettings` of search ``cfg`` for trial configs holding ``hp_names``."""
    model_spec, train_spec = cfg.specs()
    return TrialSettings(model_spec=model_spec.to_dict(), train_spec=train_spec.to_dict(), sparsity=cfg.sparsity,
                         rounds_every=cfg.rounds_every, max_epochs=cfg.resolved_max_epochs(), seed=cfg.seed,
                         hp_names=tuple(hp_names), ls_config=cfg.ls_config().to_dict(), ls_space=cfg.ls_space(),
                         state_dir=str(cfg.experiment_dir), threads=max(1, int(math.ceil(cfg.cpus_per_trial))))


def candidate_state_path(state_dir: str | os.PathLike, cid: str) -> Path:
    """Where the mirror of candidate ``cid``'s latest state lives."""
    return Path(state_dir) / "candidates" / cid / STATE_NAME


def read_epoch_log(state_dir: str | os.PathLike) -> list[dict]:
    """Every trained epoch: ``cid``, ``epoch``, ``pid``, ``trial_id``, ``start``/``time`` (wall clock
    at its start and end) and ``gpu_ids`` (tests, audits)."""
    path = Path(state_dir) / EPOCH_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_state_meta(directory: Path | None) -> dict | None:
    """``state.json`` of a directory that also holds ``state.pt``; ``None`` if either is missing or unreadable."""
    if directory is None or not (directory / META_NAME).exists() or not (directory / STATE_NAME).exists():
        return None
    try:
        return json.loads((directory / META_NAME).read_text())
    except ValueError:
        return None


def save_state(trainer, state_dir: str | os.PathLike, cid: str, meta: dict) -> Path:
    """Mirror ``trainer``'s full state as candidate ``cid``'s (``meta`` saved under ``lsh``); returns its directory.

    ``state.pt`` is written first, then ``ls_history.json`` and ``state.json``, each atomically, so a
    readable ``state.json`` never names a newer epoch than ``state.pt`` holds.
    """
    path = candidate_state_path(state_dir, cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save(path, lsh=meta)
    # the LS may hold -Infinity (singular directions): plain json, not strict JSON
    atomic_write_json(meta["ls_history"], path.parent / LS_NAME, indent=None)
    atomic_write_json({"epoch": trainer.epoch, "cid": cid}, path.parent / META_NAME, indent=None)
    return path.parent


def build_candidate(settings: TrialSettings, config: dict, corpus, *, device: str = "cpu"):
    """(trainer, sparse hook) of candidate ``config`` (with ``cid``), freshly initialised."""
    import torch

    from lsh_tune.models import ModelSpec, TrainSpec, build_model
    from lsh_tune.sparse import SparseConfig, build_sparse_hook
    from lsh_tune.train import Trainer

    seed = derive_seed(settings.seed, config[CID_KEY])
    torch.manual_seed(seed)
    model = build_model(ModelSpec.from_dict(settings.model_spec), len(corpus.vocab))
    sparse = SparseConfig(sparsity=settings.sparsity, **{k: config[k] for k in settings.hp_names},
                          **settings.sparse_kwargs)
    hook = build_sparse_hook(model, sparse, seed=seed)
    trainer = Trainer(model, corpus, TrainSpec(**settings.train_spec), seed=seed, device=device, hooks=[hook],
                      max_epochs=settings.max_epochs)
    return trainer, hook
