"""The candidate trainable: one sparse candidate trained epoch by epoch under Ray Tune.

Public Tune API only (``tune.report(metrics, checkpoint=...)``, ``tune.get_checkpoint()``,
``tune.get_context()``). Every epoch it reports ``epoch``, ``train_loss``, ``val_loss``,
``val_ppl``, ``density`` and timings; at each round boundary (every E epochs of its own
training, and at ``max_epochs``) also the Lyapunov spectrum summary, ``ls_distance`` to the
dense reference and a checkpoint with the full training state (weights, masks, optimizer and
SNT-ASGD averages, death-rate position, RNG — :meth:`lsh_tune.train.Trainer.state_dict`). The
full spectra are kept in the checkpoint and in ``candidates/<cid>/ls_history.json``; boundary
results carry the spectrum (``ls``, N exponents; TensorBoard shows it as a histogram), its summary
(``ls_max``, ``ls_mean``, ``ls_variance``, ``ls_min``, ``ls_neg_inf`` ...) and ``ls_distance``, the
distance to the reference in an LS space fitted on the reference and this candidate's history
alone (the scheduler's pool-wide ranking refits on every candidate, see ``_ls_fit.py``).

Exactly-once epochs: after every epoch the state is also mirrored to
``<experiment>/candidates/<cid>/state.pt`` (atomic replace) and the epoch is appended to
``<experiment>/epochs.jsonl``. On start the newer of Tune's checkpoint and the mirror is loaded,
so a driver killed between Tune's periodic experiment snapshots retrains nothing. After loading
a boundary state, the trainable re-reports that boundary (``lsh_replay``) before training on,
which lets :class:`~lsh_tune.search.LSHScheduler` hold it while its round is open.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsh_tune.seeds import derive_seed
from lsh_tune.search._ray import BOUNDARY_KEY, CID_KEY, FINAL_KEY, LS_KEY, REPLAY_KEY

__all__ = ["TrialSettings", "candidate_trainable", "build_candidate", "STATE_NAME", "EPOCH_LOG",
           "candidate_state_path", "read_epoch_log"]

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
        ls_embedding: LS-space embedding (``pca``, ``raw``, ``tsne``).
        ls_distance: distance in LS space (``l2``, ``cosine``).
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
    ls_embedding: str = "pca"
    ls_distance: str = "l2"
    state_dir: str | None = None
    threads: int = 1
    sparse_kwargs: dict = field(default_factory=dict)


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


def _device() -> str:
    import ray

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    return "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"


def build_candidate(settings: TrialSettings, config: dict, corpus, *, device: str = "cpu"):
    """(trainer, sparse hook) of candidate ``config`` (with ``cid``), freshly initialised."""
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


def _read_meta(directory: Path | None) -> dict | None:
    if directory is None or not (directory / META_NAME).exists() or not (directory / STATE_NAME).exists():
        return None
    try:
        return json.loads((directory / META_NAME).read_text())
    except ValueError:
        return None


def _latest_state(settings: TrialSettings, cid: str) -> tuple[Path | None, Any]:
    """The newer of Tune's checkpoint and the mirror: (directory, tune checkpoint context)."""
    from ray import tune

    options: list[tuple[int, int, Path, Any]] = []
    ckpt = tune.get_checkpoint()
    ctx = None
    if ckpt is not None:
        ctx = ckpt.as_directory()
        d = Path(ctx.__enter__())
        meta = _read_meta(d)
        if meta is not None:
            options.append((int(meta["epoch"]), 0, d, None))
    if settings.state_dir is not None:
        d = candidate_state_path(settings.state_dir, cid).parent
        meta = _read_meta(d)
        if meta is not None:
            options.append((int(meta["epoch"]), 1, d, None))
    if not options:
        return None, ctx
    return max(options, key=lambda o: (o[0], o[1]))[2], ctx


def _spectrum(trainer, tokens: torch.Tensor, ls_config: dict) -> np.ndarray:
    from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum

    cfg = LSConfig(**ls_config)
    with trainer.evaluation_weights():
        return lyapunov_spectrum(trainer.model, tokens, cfg)


def _ls_metrics(settings: TrialSettings, cid: str, history: list, reference: dict) -> dict:
    from lsh_tune.lyapunov import ls_summary
    from lsh_tune.lyapunov.distance import ls_distances

    dist, _ = ls_distances(np.asarray(reference["history"]), {cid: np.asarray(history)},
                           embedding=settings.ls_embedding, metric=settings.ls_distance)
    summary = ls_summary(np.asarray(history[-1]))
    out = {"ls_distance": float(dist[cid])}
    out.update({f"ls_{k}": v for k, v in summary.items()})
    return out


def _save_state(trainer, settings: TrialSettings, cid: str, meta: dict) -> Path | None:
    if settings.state_dir is None:
        return None
    path = candidate_state_path(settings.state_dir, cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save(path, lsh=meta)
    for name, obj in ((LS_NAME, meta["ls_history"]), (META_NAME, {"epoch": trainer.epoch, "cid": cid})):
        tmp = path.parent / f".{name}.tmp"
        tmp.write_text(json.dumps(obj))  # the LS may hold -Infinity (singular directions)
        os.replace(tmp, path.parent / name)
    return path.parent


def _log_epoch(settings: TrialSettings, cid: str, epoch: int, start: float, gpu_ids: str) -> None:
    if settings.state_dir is None:
        return
    from ray import tune

    line = json.dumps({"cid": cid, "epoch": epoch, "pid": os.getpid(),
                       "trial_id": tune.get_context().get_trial_id(), "start": start, "time": time.time(),
                       "gpu_ids": gpu_ids})
    with open(Path(settings.state_dir) / EPOCH_LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _checkpoint_dir(trainer, cid: str, meta: dict, mirror: Path | None) -> str:
    """A fresh directory holding state.pt + state.json for ``tune.report(checkpoint=...)``."""
    d = Path(tempfile.mkdtemp(prefix=f"lsh-{cid}-"))
    if mirror is not None:
        for name in (STATE_NAME, META_NAME):
            try:
                os.link(mirror / name, d / name)
            except OSError:
                shutil.copy2(mirror / name, d / name)
    else:
        trainer.save(d / STATE_NAME, lsh=meta)
        (d / META_NAME).write_text(json.dumps({"epoch": trainer.epoch, "cid": cid}))
    return str(d)


def candidate_trainable(config: dict, *, settings: TrialSettings, corpus, reference: dict | None) -> None:
    """Ray Tune function trainable of one candidate (see module docstring).

    Args:
        config: ``cid`` plus the hyperparameters named in ``settings.hp_names``.
        settings: shared settings (:class:`TrialSettings`).
        corpus: the tokenised corpus (shipped once through the object store).
        reference: ``{"history": (E_ref, N) spectra of the dense reference, "tokens": (T, K)}``;
            ``None`` when ranking by loss without LS.
    """
    import ray
    from ray import tune

    from lsh_tune.train import perplexity

    cid = str(config[CID_KEY])
    torch.set_num_threads(max(1, int(settings.threads)))
    device = _device()
    trainer, hook = build_candidate(settings, config, corpus, device=device)
    meta: dict = {"ls_history": [], "last_report": None}
    state_dir, ctx = _latest_state(settings, cid)
    try:
        if state_dir is not None:
            meta = trainer.load(state_dir / STATE_NAME)["lsh"]
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    if meta["last_report"] is not None and trainer.epoch > 0:
        tune.report({**meta["last_report"], REPLAY_KEY: True})
    gpu_ids = ",".join(str(g) for g in ray.get_gpu_ids())
    E = settings.rounds_every
    while trainer.epoch < settings.max_epochs:
        start = time.time()
        m = trainer.train_epoch()
        epoch = int(m["epoch"])
        res: dict[str, Any] = {CID_KEY: cid, "epoch": epoch, "train_loss": m["train_loss"],
                               "val_loss": m["val_loss"], "val_ppl": m["val_ppl"], "lr": m.get("lr"),
                               "asgd": bool(m.get("asgd")), "epoch_time_s": m.get("epoch_time_s"),
                               "density": float(hook.masking.report()["density"]), "device": device,
                               "gpu_ids": gpu_ids, BOUNDARY_KEY: False, FINAL_KEY: False, REPLAY_KEY: False}
        boundary = epoch % E == 0 or epoch == settings.max_epochs
        if boundary:
            res[BOUNDARY_KEY] = True
            res["round"] = math.ceil(epoch / E)
            if reference is not None:
                t0 = time.perf_counter()
                meta["ls_history"].append(_spectrum(trainer, reference["tokens"], settings.ls_config).tolist())
                res.update(_ls_metrics(settings, cid, meta["ls_history"], reference))
                res[LS_KEY] = list(meta["ls_history"][-1])
                res["ls_time_s"] = time.perf_counter() - t0
        if epoch == settings.max_epochs:
            test_loss = trainer.evaluate("test")
            res.update({FINAL_KEY: True, "test_loss": test_loss,
                        "test_ppl": perplexity(test_loss)})
        meta["last_report"] = res if boundary else None
        mirror = _save_state(trainer, settings, cid, meta)
        _log_epoch(settings, cid, epoch, start, gpu_ids)
        if boundary:
            ckpt_dir = _checkpoint_dir(trainer, cid, meta, mirror)
            try:
                tune.report(res, checkpoint=tune.Checkpoint.from_directory(ckpt_dir))
            finally:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
        else:
            tune.report(res)

