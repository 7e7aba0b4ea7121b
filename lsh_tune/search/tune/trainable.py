"""The search's trainable: one sparse candidate trained epoch by epoch under Ray Tune — or, for the
trial with ``cid`` = :data:`~lsh_tune.search.keys.REFERENCE_CID`, the dense reference
(:func:`lsh_tune.search.run.reference.train_reference`: resumable, one LS per epoch, progress reported
every epoch, cached in the storage path), so the reference trains on a worker with a candidate's
resources while round-0 candidates train beside it.

Result keys: :mod:`lsh_tune.search.keys`; settings, construction and state files:
:mod:`lsh_tune.search.candidate`.

Public Tune API only (``tune.report(metrics, checkpoint=...)``, ``tune.get_checkpoint()``,
``tune.get_context()``). Every epoch it reports ``epoch``, ``train_loss``, ``val_loss``,
``val_ppl``, ``density`` and timings (with metric ``ls`` the spectrum is computed after every
epoch and once before training, epoch 0, as in the paper's §3; ``ls_time_s``); at each round
boundary (every E epochs of its own training, and at ``max_epochs``) also the Lyapunov spectrum
summary, the spectra of every epoch since the previous boundary (``ls_epochs``), ``ls_distance_own_fit`` to the
dense reference and a checkpoint with the full training state (weights, masks, optimizer and
SNT-ASGD averages, death-rate position, RNG — :meth:`lsh_tune.train.Trainer.state_dict`). The
full spectra are kept in the checkpoint and in ``candidates/<cid>/ls_history.json``; boundary
results carry the spectrum (``ls``, N exponents; TensorBoard shows it as a histogram), its summary
(``ls_max``, ``ls_mean``, ``ls_variance``, ``ls_min``, ``ls_neg_inf`` ...) and ``ls_distance_own_fit``, the
distance to the reference in the search's LS space fitted on the reference and this candidate's
history alone (the pool-wide ranking refits on every candidate, see ``_ls_fit.py``).

Until the reference is trained, boundary results carry the spectrum but no ``ls_distance_own_fit`` (the
ranking waits for the reference in the ledger); each boundary looks for it in the cache again.

Exactly-once epochs: after every epoch the state is also mirrored to
``<experiment>/candidates/<cid>/state.pt`` (all-or-nothing, through the experiment's
:class:`~lsh_tune.storage.Storage`, object stores included) and the epoch is a record of the log
``<experiment>/epochs/``. On start the newer of Tune's checkpoint and the mirror is loaded (the
other one if it does not read back), so a driver killed between Tune's periodic experiment
snapshots retrains nothing. After loading a boundary state, the trainable re-reports that
boundary (``lsh_replay``) before training on, which lets :class:`~lsh_tune.search.LSHScheduler`
hold it while its round is open.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsh_tune.search.candidate import (EPOCH_RECORD_METRICS, TrialSettings, build_candidate, load_newest_state,
                                       log_epoch, read_state_meta, save_state)
from lsh_tune.search.keys import (BOUNDARY_KEY, CID_KEY, FINAL_KEY, LS_EPOCHS_KEY, LS_FIRST_EPOCH_KEY, LS_KEY,
                                  OWN_FIT_DISTANCE_KEY, REFERENCE_CID, REFERENCE_DONE_KEY, REFERENCE_EPOCHS_KEY,
                                  REPLAY_KEY)
from lsh_tune.search.layout import META_NAME, STATE_NAME, candidate_dir
from lsh_tune.search.run.reference import reference_history, train_reference
from lsh_tune.search.tune.ray_output import quiet_sigterm_in_gc
from lsh_tune.storage import Storage

__all__ = ["CPU_FALLBACK_ENV", "candidate_trainable", "device_for"]


#: Environment variable: ``1`` lets a trial that Ray gave a GPU train on CPU when CUDA is unusable there
#: (the old behaviour). The test suite sets it (``tests/conftest.py``: its Ray instances declare GPUs
#: this machine does not have); the fake cluster (``cluster/local.yaml``, ``RAY_FAKE_CLUSTER=1``) on a
#: machine without ``/dev/nvidia0`` is allowed without it.
CPU_FALLBACK_ENV = "LSH_ALLOW_CPU_FALLBACK"


def device_for(gpu_ids, cuda_available: bool, cuda_version: str | None, environ, has_nvidia_device: bool,
               allow_cpu_fallback: bool = False) -> str:
    """``"cuda"`` or ``"cpu"`` for a trial that Ray gave ``gpu_ids``; CPU for a trial without GPUs.

    Raises:
        RuntimeError: GPUs given but CUDA is unusable (``cuda_available`` False), neither
            ``allow_cpu_fallback`` (``--allow-cpu-fallback``), :data:`CPU_FALLBACK_ENV` ``=1`` nor a fake cluster (``RAY_FAKE_CLUSTER=1`` without
            ``/dev/nvidia0``): one line with torch's CUDA build and the likely reason, instead of a
            paper-size candidate training on CPU for days.
    """
    if not gpu_ids:
        return "cpu"
    if cuda_available:
        return "cuda"
    if allow_cpu_fallback or environ.get(CPU_FALLBACK_ENV) == "1" or (environ.get("RAY_FAKE_CLUSTER") == "1" and not has_nvidia_device):
        return "cpu"
    why = ("this torch is a CPU-only build" if cuda_version is None else
           "no usable GPU driver/device here (nvidia-smi, CUDA_VISIBLE_DEVICES)" if not has_nvidia_device else
           "the driver does not support it or the device is busy/unavailable")
    raise RuntimeError(f"the trial was given GPU(s) {','.join(str(g) for g in gpu_ids)} but CUDA is unusable here "
                       f"(torch {torch.__version__}, torch.version.cuda={cuda_version}: {why}); fix the node's torch/"
                       f"driver, or pass --allow-cpu-fallback (or set {CPU_FALLBACK_ENV}=1 on the cluster) to train on CPU instead")


def _device(allow_cpu_fallback: bool = False) -> str:
    import ray

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    return device_for(gpu_ids, bool(gpu_ids) and torch.cuda.is_available(), torch.version.cuda, os.environ,
                      os.path.exists("/dev/nvidia0"), allow_cpu_fallback)


def _state_options(store: Storage | None, cid: str) -> tuple[list[tuple[Storage, str]], Any]:
    """Tune's checkpoint and the mirror, newest epoch first (the mirror first on a tie): [(storage,
    directory there)], and Tune's checkpoint context to close after loading."""
    from ray import tune

    options: list[tuple[int, int, Storage, str]] = []
    ckpt = tune.get_checkpoint()
    ctx = None
    if ckpt is not None:
        ctx = ckpt.as_directory()
        local = Storage(ctx.__enter__())
        meta = read_state_meta(local)
        if meta is not None:
            options.append((int(meta["epoch"]), 0, local, ""))
    if store is not None:
        meta = read_state_meta(store, candidate_dir(cid))
        if meta is not None:
            options.append((int(meta["epoch"]), 1, store, candidate_dir(cid)))
    options.sort(key=lambda o: (o[0], o[1]), reverse=True)
    return [(where, directory) for _, _, where, directory in options], ctx


def _spectrum(trainer, tokens: torch.Tensor, ls_config: dict) -> np.ndarray:
    from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum

    cfg = LSConfig(**ls_config)
    with trainer.evaluation_weights():
        return lyapunov_spectrum(trainer.model, tokens, cfg)


def _ls_metrics(settings: TrialSettings, cid: str, history: list, reference: dict) -> dict:
    """The spectrum's summary, and ``ls_distance_own_fit`` once the reference's history is known."""
    from lsh_tune.lyapunov import ls_summary

    out = {f"ls_{k}": v for k, v in ls_summary(np.asarray(history[-1])).items()}
    ref = reference_history(reference)
    if ref is not None:
        dist = settings.ls_space.distances(np.asarray(ref), {cid: np.asarray(history)})
        out[OWN_FIT_DISTANCE_KEY] = float(dist[cid])
    return out


def _tags() -> dict:
    """Where this epoch runs: ``pid``, ``trial_id``, ``gpu_ids``, ``node_id`` (Ray's), ``hostname`` and
    ``node_ip`` (as Tune's own ``hostname``/``node_ip`` of a result)."""
    import ray
    from ray import tune

    return {"pid": os.getpid(), "trial_id": tune.get_context().get_trial_id(),
            "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
            "node_id": ray.get_runtime_context().get_node_id(), "hostname": platform.node(),
            "node_ip": ray.util.get_node_ip_address()}


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


def _train_epoch(trainer, hook, settings: TrialSettings, cid: str, meta: dict, reference: dict | None,
                 **tags: Any) -> dict:
    """Train one epoch and return its result (``tags``: ``device``, ``gpu_ids``).

    With a reference (metric ``ls``) this epoch's spectrum is appended to ``meta["ls_history"]``
    (its epoch to ``meta["ls_epochs"]``); a boundary result carries those since the previous one.
    """
    from lsh_tune.train import perplexity

    m = trainer.train_epoch()
    epoch = int(m["epoch"])
    res: dict[str, Any] = {CID_KEY: cid, "epoch": epoch, "train_loss": m["train_loss"],
                           "val_loss": m["val_loss"], "val_ppl": m["val_ppl"], "lr": m.get("lr"),
                           "asgd": bool(m.get("asgd")), "epoch_time_s": m.get("epoch_time_s"),
                           "density": float(hook.masking.report()["density"]), **tags,
                           BOUNDARY_KEY: False, FINAL_KEY: False, REPLAY_KEY: False}
    E = settings.rounds_every
    if reference is not None:
        res["ls_time_s"] = _append_spectrum(trainer, settings, meta, reference, epoch)
    if epoch % E == 0 or epoch == settings.max_epochs:
        res[BOUNDARY_KEY] = True
        res["round"] = math.ceil(epoch / E)
        if reference is not None:
            res.update(_ls_metrics(settings, cid, meta["ls_history"], reference))
            res[LS_KEY] = list(meta["ls_history"][-1])
            previous = ((epoch - 1) // E) * E
            first = previous + 1 if previous > 0 else 0
            res[LS_FIRST_EPOCH_KEY] = first
            res[LS_EPOCHS_KEY] = [s for e, s in zip(meta["ls_epochs"], meta["ls_history"]) if first <= e <= epoch]
    if epoch == settings.max_epochs:
        test_loss = trainer.evaluate("test")
        res.update({FINAL_KEY: True, "test_loss": test_loss, "test_ppl": perplexity(test_loss)})
    return res


def _append_spectrum(trainer, settings: TrialSettings, meta: dict, reference: dict, epoch: int) -> float:
    """Compute the spectrum at the trainer's current ``epoch`` into ``meta``; returns its time (s)."""
    t0 = time.perf_counter()
    meta["ls_history"].append(_spectrum(trainer, reference["tokens"], settings.ls_config).tolist())
    meta["ls_epochs"].append(int(epoch))
    return time.perf_counter() - t0


def candidate_trainable(config: dict, *, settings: TrialSettings, corpus, reference: dict | None) -> None:
    """Ray Tune function trainable of one candidate, or of the dense reference (see module docstring).

    Args:
        config: ``cid`` plus the hyperparameters named in ``settings.hp_names`` (the reference's:
            ``cid`` alone).
        settings: shared settings (:class:`TrialSettings`).
        corpus: the tokenised corpus (shipped once through the object store).
        reference: ``{"history": (E_ref, N) spectra of the dense reference or None while it trains,
            "tokens": (T, K), "plan": ReferencePlan}``; ``None`` when ranking by loss without LS.
    """
    from ray import tune

    entered = time.time()  # what this (re)start costs before its first epoch: the record's setup_s
    quiet_sigterm_in_gc()
    cid = str(config[CID_KEY])
    torch.set_num_threads(max(1, int(settings.threads)))
    device = _device(settings.allow_cpu_fallback)
    if cid == REFERENCE_CID:
        return _reference_trial(reference, corpus, device)
    store = None if settings.state_dir is None else Storage(settings.state_dir)
    trainer, hook = build_candidate(settings, config, corpus, device=device)
    meta: dict = {"ls_history": [], "last_report": None}
    options, ctx = _state_options(store, cid)
    try:
        saved = load_newest_state(trainer, options)  # a corrupt mirror falls back to Tune's checkpoint
        if saved is not None:
            meta = saved["lsh"]
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    if "ls_epochs" not in meta:  # a state saved with one spectrum per boundary (the ledger keeps those)
        meta["ls_history"], meta["ls_epochs"] = [], []
    if reference is not None and trainer.epoch == 0 and not meta["ls_epochs"]:
        _append_spectrum(trainer, settings, meta, reference, 0)  # epoch 0: before training
    if store is not None and meta.get("epoch_record") is not None:
        log_epoch(store, meta["epoch_record"], if_missing=True)  # killed after its state was saved, perhaps
        # before it was logged (one file checked, not the whole log read)
    if meta["last_report"] is not None and trainer.epoch > 0:
        tune.report({**meta["last_report"], REPLAY_KEY: True})
    tags = _tags()
    while trainer.epoch < settings.max_epochs:
        start = time.time()
        res = _train_epoch(trainer, hook, settings, cid, meta, reference, device=device, gpu_ids=tags["gpu_ids"])
        epoch, boundary = res["epoch"], res[BOUNDARY_KEY]
        meta["last_report"] = res if boundary else None
        # the epoch's log record travels with its state: a kill between the two writes loses neither
        meta["epoch_record"] = {"cid": cid, "epoch": epoch, "start": start, "time": time.time(), **tags,
                                **{k: float(res[k]) for k in EPOCH_RECORD_METRICS if res.get(k) is not None}}
        if entered is not None:  # the first epoch of this (re)start: what came before it
            meta["epoch_record"]["setup_s"], entered = start - entered, None
        saving = time.time()
        mirror = None if store is None else save_state(trainer, store, cid, meta)
        if store is not None:
            meta["epoch_record"]["save_s"] = time.time() - saving  # in the log only (the state was written)
            log_epoch(store, meta["epoch_record"])
        if boundary:
            ckpt_dir = _checkpoint_dir(trainer, cid, meta, mirror)
            try:
                tune.report(res, checkpoint=tune.Checkpoint.from_directory(ckpt_dir))
            finally:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
        else:
            tune.report(res)


def _reference_trial(reference: dict | None, corpus, device: str) -> None:
    """Train (or resume, or find cached) the dense reference; report each epoch, then its scores."""
    from ray import tune

    if reference is None or reference.get("plan") is None:
        raise ValueError(f"the {REFERENCE_CID!r} trial needs the reference plan (metric 'ls')")
    plan = reference["plan"]

    def report(progress: dict) -> None:
        tune.report({CID_KEY: REFERENCE_CID, **progress, "device": device})

    ref = train_reference(plan, corpus, device=device, tags=_tags(), on_epoch=report)
    report({"epoch": plan.epochs, REFERENCE_EPOCHS_KEY: plan.epochs, REFERENCE_DONE_KEY: True,
            **{k: ref.meta[k] for k in ("val_ppl", "test_ppl") if k in ref.meta}})
