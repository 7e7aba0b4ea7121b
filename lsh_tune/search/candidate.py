"""One candidate outside Ray: its settings, how it is built, and where its state lives (Ray-free).

Files of candidate ``cid`` in the experiment's storage (:class:`lsh_tune.storage.Storage`: a
directory or an object-store URI; names: :mod:`lsh_tune.search.layout`): ``candidates/<cid>/state.pt``
(the latest full training state, :meth:`lsh_tune.train.Trainer.state_dict`), ``state.json``
(``{"epoch", "cid"}`` of that state) and ``ls_history.json`` (its spectra, one per epoch from epoch 0
with metric ``ls``; −inf exponents as JSON ``-Infinity``); every trained epoch of the search is one
record of the log ``epochs/`` (:meth:`Storage.append_record`).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from lsh_tune.errors import LSHUsageError
from lsh_tune.search._ls_fit import LSSpace
from lsh_tune.search.keys import CID_KEY
from lsh_tune.search.layout import EPOCH_LOG, LS_NAME, META_NAME, STATE_NAME, candidate_dir
from lsh_tune.seeds import derive_seed
from lsh_tune.storage import Storage

if TYPE_CHECKING:  # pragma: no cover
    from lsh_tune.search.config import SearchConfig

__all__ = ["EPOCH_RECORD_METRICS", "TrialSettings", "trial_settings", "build_candidate", "candidate_dir",
           "load_newest_state", "read_epoch_log", "log_epoch", "read_state_meta", "save_state", "save_trainer",
           "STATE_NAME", "META_NAME", "LS_NAME", "EPOCH_LOG"]

logger = logging.getLogger(__name__)


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
        ls_space: the LS space of the trial's own ``ls_distance_own_fit`` (the search's).
        state_dir: the experiment's storage location (absolute directory or object-store URI) for
            the per-epoch mirrors and the epoch log (``None``: Tune's checkpoints only).
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
    allow_cpu_fallback: bool = False


def trial_settings(cfg: "SearchConfig", hp_names: tuple[str, ...]) -> TrialSettings:
    """The :class:`TrialSettings` of search ``cfg`` for trial configs holding ``hp_names``."""
    model_spec, train_spec = cfg.specs()
    return TrialSettings(model_spec=model_spec.to_dict(), train_spec=train_spec.to_dict(), sparsity=cfg.sparsity,
                         rounds_every=cfg.rounds_every, max_epochs=cfg.resolved_max_epochs(), seed=cfg.seed,
                         hp_names=tuple(hp_names), ls_config=cfg.ls_config().to_dict(), ls_space=cfg.ls_space(),
                         state_dir=cfg.experiment().uri, threads=max(1, int(math.ceil(cfg.cpus_per_trial))),
                         sparse_kwargs=dict(cfg.setting["sparse"]) if cfg.setting else {},
                         allow_cpu_fallback=cfg.allow_cpu_fallback)


#: What an epoch's record of the log holds besides where and when it ran, as the trial reported it:
#: losses in nats/token (``test_loss`` at a finalist's last epoch only), perplexities per token, the
#: density (fraction of weights kept), the learning rate, seconds of training + validation and of the
#: epoch's spectrum (metric ``ls``). Records written before these keys were added lack them.
EPOCH_RECORD_METRICS = ("train_loss", "val_loss", "val_ppl", "test_loss", "test_ppl", "density", "lr",
                        "epoch_time_s", "ls_time_s")


def read_epoch_log(experiment: Storage | str | os.PathLike) -> list[dict]:
    """Every trained epoch, oldest first: ``cid``, ``epoch``, ``pid``, ``trial_id``, ``start``/``time``
    (wall clock at its start and end, s since the epoch), where it ran (``gpu_ids``, Ray's ``node_id``,
    ``hostname``, ``node_ip``), its metrics (:data:`EPOCH_RECORD_METRICS`, where known) and the slot time
    around it: ``setup_s`` (the first epoch after a trial's start or restore: seconds from the trial's
    start to this epoch's: building the model, loading its state, the epoch-0 spectrum) and ``save_s``
    (seconds to write its full state to the experiment's storage after it)."""
    return Storage.of(experiment).read_records(EPOCH_LOG)


def log_epoch(experiment: Storage | str | os.PathLike, record: dict, *, if_missing: bool = False) -> None:
    """Add one trained epoch (``cid``, ``epoch``, ``time`` at its end ...) to the log of :func:`read_epoch_log`.

    Idempotent: the record's file is named by its end time, ``cid`` and ``epoch``, so logging it again
    (a trial restarted from a state saved just before the first attempt to log it) writes the same
    file instead of adding a second record; ``if_missing`` leaves a file already there as it is (the
    first attempt's record also holds what was measured after the state was saved, ``save_s``).
    """
    name = f"{EPOCH_LOG}/{round(float(record['time']) * 1e9):020d}-{record['cid']}-e{int(record['epoch'])}.json"
    store = Storage.of(experiment)
    if if_missing and store.is_file(name):
        return
    store.write_json(name, record, indent=None)


def read_state_meta(store: Storage, directory: str = "") -> dict | None:
    """``state.json`` of ``directory`` (relative to ``store``) when it also holds ``state.pt``;
    ``None`` if either is missing or unreadable."""
    if not store.is_file(_join(directory, META_NAME)) or not store.is_file(_join(directory, STATE_NAME)):
        return None
    try:
        return store.read_json(_join(directory, META_NAME))
    except (ValueError, FileNotFoundError):
        return None


def load_newest_state(trainer, options: Sequence[tuple[Storage, str]]) -> dict | None:
    """Load into ``trainer`` the first of ``options`` — ``(storage, directory)`` holding ``state.pt``,
    newest first — that reads back; return its saved dict (``None``: no options).

    A corrupt, truncated or foreign state is skipped with a warning naming it, so a damaged mirror
    falls back to the older Tune checkpoint (the epochs in between are trained again).

    Raises:
        LSHUsageError: every option failed (each named); nothing wrong is ever loaded silently.
    """
    failed = []
    for store, directory in options:
        try:
            with store.local_file(_join(directory, STATE_NAME)) as path:
                return trainer.load(path)
        except (LSHUsageError, FileNotFoundError) as e:
            logger.warning("skipping an unreadable state: %s", e)
            failed.append(str(e))
    if failed:
        raise LSHUsageError(f"no state of this candidate reads back: {'; '.join(failed)}")
    return None


def save_trainer(trainer, store: Storage, rel: str, **extra) -> None:
    """:meth:`Trainer.state_dict` plus ``extra`` keys, streamed to ``rel`` all-or-nothing (``torch.save``)."""
    import torch

    state = trainer.state_dict()
    state.update(extra)
    store.write_with(rel, lambda f: torch.save(state, f))


def save_state(trainer, store: Storage, cid: str, meta: dict) -> Path | None:
    """Mirror ``trainer``'s full state as candidate ``cid``'s in the experiment's ``store`` (``meta``
    saved under ``lsh``).

    ``state.pt`` is written first, then ``ls_history.json`` and ``state.json``, each all-or-nothing,
    so a readable ``state.json`` never names a newer epoch than ``state.pt`` holds.

    Returns:
        the mirror as a local directory on a POSIX root (``None`` on an object store).
    """
    directory = candidate_dir(cid)
    save_trainer(trainer, store, _join(directory, STATE_NAME), lsh=meta)
    # the LS may hold -Infinity (singular directions): plain json, not strict JSON
    store.write_json(_join(directory, LS_NAME), meta["ls_history"], indent=None)
    store.write_json(_join(directory, META_NAME), {"epoch": trainer.epoch, "cid": cid}, indent=None)
    return store.local_path(directory)


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


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
