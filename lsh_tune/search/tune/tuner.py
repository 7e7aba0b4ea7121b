"""Running a search on Ray Tune: Ray and its resources, the Tuner (fresh or restored), then the outputs.

``run_search(SearchConfig(...))`` is what ``lsh-tune search`` and the experiment scripts call.

Experiment directory ``<storage_path>/<name>/`` (besides Tune's own files; every name is defined in
:mod:`lsh_tune.search.layout`), in any :class:`~lsh_tune.storage.Storage` (a directory shared by the
nodes, or an object-store URI; Tune gets the same filesystem, :func:`tune_storage`):

* ``lsh/search.json`` — the :class:`~lsh_tune.search.config.SearchConfig` (a resume reuses it);
* ``lsh/state.json`` — the pool/ledger state (rounds, rankings, histories, statuses); not at the
  top level, where Tune's restore would overwrite it with a stale copy;
* ``candidates/<cid>/state.pt`` — each candidate's latest full training state
  (:mod:`lsh_tune.search.candidate`);
* ``epochs/`` — one record per trained candidate epoch (exactly-once audit);
* after the search: the files of :mod:`lsh_tune.search.run.outputs`.

The dense reference is a trial of the same Tuner (:data:`~lsh_tune.search.keys.REFERENCE_CID`,
:mod:`lsh_tune.search.run.reference`), cached in ``<storage_path>/reference_cache/``; the driver only
reads its cache. The corpus and the reference plan reach every trial through Ray's object store.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace

from lsh_tune.errors import LSHStorageError, LSHUsageError
from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search.candidate import trial_settings
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.keys import REFERENCE_CID
from lsh_tune.search.layout import STATE_FILE, TUNE_PICKLE, TUNE_STATE_PREFIX
from lsh_tune.search.packing import AUTO, accelerator_memory, resolve_gpus_per_trial
from lsh_tune.search.run.outputs import write_outputs
from lsh_tune.search.run.preflight import check_compute, check_shared_storage, preflight
from lsh_tune.search.run.ray_address import check_ray_address
from lsh_tune.search.run.reference import prepare_reference, search_corpus
from lsh_tune.search.tune.ray_output import quiet_tune, ray_init_kwargs, tune_verbosity
from lsh_tune.search.views.session import publish_views, search_session, trial_slots
from lsh_tune.space import SearchSpace
from lsh_tune.storage import Storage

__all__ = ["run_search", "trainable_for", "make_trainable", "check_resources", "resolve_gpus", "tune_storage",
           "running_cluster_address"]

logger = logging.getLogger(__name__)


def run_search(cfg: SearchConfig, *, resume: bool = False, space: SearchSpace | None = None,
               callbacks: list | None = None) -> dict:
    """Run (or resume) a search and write the outputs; returns the summary (``best.json``).

    Args:
        cfg: the search.
        resume: continue the search saved in ``cfg.experiment_dir`` (its saved settings win).
        space: searched space, replacing ``cfg.space`` (``None``: ``cfg.space``).
        callbacks: your own :class:`ray.tune.Callback` instances, called by Tune beside the search's
            own on this run only: a resume calls those given to it
            (:mod:`lsh_tune.search.tune._user_callbacks`).

    Raises:
        LSHUsageError: bad settings, a search already in the directory (without ``resume``),
            nothing to resume, or ``callbacks`` that are not a list of Tune callbacks.
    """
    import ray

    from lsh_tune.search.tune._user_callbacks import check_callbacks, run_callbacks

    callbacks = check_callbacks(callbacks)
    if space is not None:
        cfg = replace(cfg, space=space)
    cfg = preflight(cfg, resume=resume)  # experiment dir, storage, corpus, reference checkpoint: before Ray
    exp = cfg.experiment()
    quiet_tune(cfg.verbose)
    if not ray.is_initialized():
        check_ray_address(cfg.address)  # one line and exit 2 where no cluster answers, not minutes of retries
        ray.init(address=cfg.address, include_dashboard=False, **ray_init_kwargs(cfg.verbose))
    _check_shared_storage(cfg)  # a local path on a multi-host cluster: refused before anything starts
    cfg = resolve_gpus(cfg)  # --gpus-per-trial auto → a number, before anything is saved or placed
    check_resources(cfg, ray.cluster_resources())
    corpus = search_corpus(cfg)
    reference = prepare_reference(cfg, corpus) if cfg.signal().needs_reference else None
    ledger = SearchLedger.open(exp) if resume else _new_ledger(cfg, reference)
    ledger.load_reference()  # finished while no driver ran (resume), or by an earlier search (cache)
    if ledger.needs_reference:
        logger.info("dense reference %s: trained by the trial %r (%d epochs) while round 0 starts",
                    reference["plan"].key, REFERENCE_CID, reference["plan"].epochs)
    trainable = make_trainable(cfg, ledger.generator.space, corpus, reference)
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(2, cfg.pool_size)))
    slots = trial_slots(cfg, ray.cluster_resources())
    with search_session(cfg, lambda: SearchLedger.open(exp), corpus, slots=slots, reference=reference) as progress, \
            run_callbacks(callbacks) as user_callbacks:
        try:
            _tuner(cfg, ledger, trainable, resume, user_callbacks).fit()
        except Exception as e:  # Tune keeps only the text of what the scheduler/searcher raised
            ours = _lsh_error(e)
            if ours is e:
                raise
            raise ours from None
        summary = write_outputs(cfg, SearchLedger.open(exp), corpus, reference)
        progress.finish(summary)
    if callbacks and not user_callbacks.attached:
        logger.warning("Tune restored %s from a snapshot saved before lsh_tune passed callbacks on: the %d "
                       "callback(s) given were not called", exp.uri_of(), len(callbacks))
    publish_views(cfg)
    return summary


def running_cluster_address() -> str | None:
    """``HOST:PORT`` of the Ray cluster ``ray start`` left running on this machine (what ``ray.init()``
    without an address joins), where something answers there; else ``None``.

    Ray's own lookup: the address file ``ray start`` writes (``/tmp/ray/ray_current_cluster``,
    under ``RAY_TMPDIR``/``TMPDIR`` when set), read by the private ``ray._private.utils.read_ray_address``
    (``ray._private.services.find_bootstrap_address``), which ``ray.init()`` itself uses; Ray has no
    public call for it. ``tests/test_search_cli.py`` breaks if Ray changes it. A stale file (a cluster
    killed without ``ray stop``) names an address where nothing answers: ``None`` (a local instance).
    """
    from ray._private.services import find_bootstrap_address

    found = find_bootstrap_address(None)
    if not found:
        return None
    try:
        check_ray_address(found, timeout_s=2.0)
    except LSHUsageError:  # LSHAddressError: nothing answers there
        logger.info("Ray's address file names %s, where no cluster answers: starting a local instance", found)
        return None
    return found


def _check_shared_storage(cfg: SearchConfig) -> None:
    """:func:`~lsh_tune.search.run.preflight.check_shared_storage` with the running cluster's alive nodes,
    this driver's IP and this machine's ``/proc/mounts`` (none: not checked)."""
    import ray

    try:
        mounts = open("/proc/mounts").read()
    except OSError:
        mounts = None
    nodes = [n.get("NodeManagerAddress") for n in ray.nodes() if n.get("Alive")]
    check_shared_storage(cfg.storage_path, cfg.storage().is_local, ray.util.get_node_ip_address(),
                         [ip for ip in nodes if ip], mounts)


def _new_ledger(cfg: SearchConfig, reference: dict | None) -> SearchLedger:
    """Save the config and create the ledger of a new search: with a signal that needs a reference
    (``ls``, ``hybrid``) the ledger ranks from the candidates' spectra and waits for the reference. A
    candidate above the vocabulary size's perplexity is not learning (``PoolConfig.untrained_ppl``)."""
    exp = cfg.experiment()
    cfg.save()
    SearchLedger.forget(exp)
    kwargs = {"death_rate": cfg.grid_death_rate} if cfg.hpo == "grid" else {}
    ls_fit, source, signal = None, None, cfg.signal()
    if reference is not None:
        ls_fit = signal.make_fit(reference["history"])
        source = reference["plan"].source()
    schedule = cfg.pool_config(untrained_ppl=float(len(search_corpus(cfg).vocab)))
    return SearchLedger.create(schedule, cfg.hpo, cfg.space, exp, ls_fit=ls_fit, reference_source=source,
                               signal=signal, **kwargs)


def tune_storage(experiment: Storage) -> tuple[str, object | None]:
    """(path, filesystem) of ``experiment`` the way Tune takes them (``storage_filesystem`` for an
    object store, so an endpoint given in the URI reaches Tune too; ``None`` for a local directory)."""
    return experiment.root, (None if experiment.is_local else experiment.fs)


def _tuner(cfg: SearchConfig, ledger: SearchLedger, trainable, resume: bool, user_callbacks):
    """Tune's restored Tuner on resume (when Tune saved one), else a new one with the LSH adapters and
    the callbacks: the result loggers, the search's events, then ``user_callbacks`` (a
    :class:`~lsh_tune.search.tune._user_callbacks.RunCallbacks`, which a restored Tuner's pickled one becomes)."""
    from ray import tune

    from lsh_tune.search.tune._events_callback import SearchEventsCallback
    from lsh_tune.search.tune.loggers import result_logger_callbacks
    from lsh_tune.search.tune.adapters import LSHScheduler, LSHSearcher

    exp = cfg.experiment()
    path, fs = tune_storage(exp)
    if resume and tune.Tuner.can_restore(path, storage_filesystem=fs) and _tune_snapshot_readable(exp):
        # resume_errored=False: a candidate whose trial errored was either dropped by the ledger or
        # re-issued as a new trial (SearchLedger.on_failed); resuming the errored trial too would
        # train that candidate twice.
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False,
                                  storage_filesystem=fs)
    parent, _ = tune_storage(cfg.storage())
    # num_to_keep=1: the mirror under candidates/ is always at least as new, and a paper-size
    # candidate's full state (weights, masks, averages, optimizer) is ~1 GB.
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(scheduler=LSHScheduler(ledger, max_failures=cfg.max_failures),
                                    search_alg=LSHSearcher(ledger), num_samples=-1, reuse_actors=True),
        run_config=tune.RunConfig(name=cfg.name, storage_path=parent, storage_filesystem=fs,
                                  verbose=tune_verbosity(cfg.verbose),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                  callbacks=[*result_logger_callbacks(), SearchEventsCallback(exp.uri),
                                             user_callbacks]))


def _tune_snapshot_readable(exp: Storage) -> bool:
    """Whether Tune's own snapshot of the run (``tuner.pkl``, the newest ``experiment_state-*.json``)
    reads back. The search does not depend on it (``lsh/state.json`` and the candidates' states are
    enough): when it is damaged, the search continues with fresh trials that load those states."""
    import json
    import pickle

    states = sorted(n for n in exp.listdir() if n.startswith(TUNE_STATE_PREFIX) and n.endswith(".json"))
    try:
        pickle.loads(exp.read_bytes(TUNE_PICKLE))
        if states:
            json.loads(exp.read_text(states[-1]))
        return True
    except Exception as e:  # a damaged pickle can raise nearly anything
        logger.warning("Tune's snapshot in %s does not read back (%s: %s); continuing from %s and the "
                       "candidates' own states with fresh trials", exp.uri_of(), type(e).__name__, e, STATE_FILE)
        return False


def make_trainable(cfg: SearchConfig, space: SearchSpace, corpus, reference: dict | None):
    """The trainable (candidates and the reference) with its shared inputs and per-trial resources attached."""
    from ray import tune

    from lsh_tune.search.tune.trainable import candidate_trainable

    ship = None if reference is None else {k: reference[k] for k in ("history", "tokens", "plan")}
    settings = trial_settings(cfg, space.names)
    return tune.with_resources(
        tune.with_parameters(candidate_trainable, settings=settings, corpus=corpus, reference=ship),
        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})


def trainable_for(experiment_dir: str | os.PathLike):
    """The trainable of a saved search, for ``tune.Tuner.restore(experiment_dir, trainable_for(experiment_dir))``
    (an object store also needs ``storage_filesystem``, see :func:`tune_storage`).

    The scheduler and searcher come back from Tune's own pickle and re-open the ledger from
    ``lsh/state.json``; after ``fit()`` call :func:`~lsh_tune.search.run.outputs.write_outputs` (or
    use ``--resume``, which does all of this).
    """
    parent, name = Storage.split(experiment_dir)
    exp = parent.child(name)
    cfg = replace(SearchConfig.load(exp), storage_path=parent.uri, name=name)
    corpus = search_corpus(cfg)
    reference = prepare_reference(cfg, corpus) if cfg.signal().needs_reference else None
    return make_trainable(cfg, SearchLedger.open(exp).generator.space, corpus, reference)


def _lsh_error(error: BaseException) -> BaseException:
    """The :class:`LSHStorageError`/:class:`LSHUsageError` behind ``error``, else ``error`` itself.

    Tune wraps an exception raised inside the scheduler or the searcher (a full disk while the
    ledger saves its state) in a ``TuneError`` holding only its text; the original is the
    ``TuneError``'s ``__context__``.
    """
    seen, e = set(), error
    while e is not None and id(e) not in seen:
        if isinstance(e, (LSHStorageError, LSHUsageError)):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return error


def resolve_gpus(cfg: SearchConfig) -> SearchConfig:
    """``cfg`` with ``gpus_per_trial="auto"`` resolved against the running Ray instance (any other
    value, a resumed search's saved number included, is returned unchanged).

    The pure choice is :func:`lsh_tune.search.packing.resolve_gpus_per_trial`; here: the cluster's
    GPUs (``ray.cluster_resources()``) and one GPU's memory (the driver's own GPU where it sees one,
    else the nodes' ``accelerator_type``, else unknown). One line on stderr says what was chosen and
    why; the config keeps the reason (``gpus_per_trial_auto``, saved with the search).

    Raises:
        LSHUsageError: ``auto`` chose 0 (no GPU) for a ``paper`` search
            (:func:`~lsh_tune.search.run.preflight.check_compute`).
    """
    import sys

    import ray

    if cfg.gpus_per_trial != AUTO:
        return cfg
    resources = _cluster_resources(ray.cluster_resources())
    memory, source = _gpu_memory(resources)
    model_spec, train_spec = cfg.specs()
    choice = resolve_gpus_per_trial(AUTO, float(resources.get("GPU", 0.0)), memory, model_spec, train_spec,
                                    vocab_size=len(search_corpus(cfg).vocab), memory_source=source)
    print(f"lsh-tune: {choice.line()}", file=sys.stderr, flush=True)
    if choice.warning:
        print(f"lsh-tune: warning: {choice.warning}", file=sys.stderr, flush=True)
    cfg = replace(cfg, gpus_per_trial=choice.gpus_per_trial, gpus_per_trial_auto=choice.reason)
    check_compute(cfg)
    return cfg


def _cluster_resources(now: dict) -> dict:
    """``now`` (``ray.cluster_resources()``), where it has no GPU but the autoscaler's node types do
    (a CPU head whose GPU workers scale from 0, ``cluster/gpu.yaml``): the GPUs and accelerator types
    those node types would bring (the cluster config Ray Train also reads)."""
    if float(now.get("GPU", 0.0)) > 0:
        return now
    try:
        from ray._private.state import state

        most = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # noqa: BLE001 - a private API (a Ray client, another version): what runs now
        logger.debug("no autoscaler cluster config", exc_info=True)
        return now
    if float(most.get("GPU", 0) or 0) <= 0:
        return now
    return {**now, "GPU": float(most["GPU"]), **{k: v for k, v in most.items() if k.startswith("accelerator_type:")}}


def _gpu_memory(resources: dict) -> tuple[float | None, str]:
    """(bytes, where from) of one GPU of the cluster: the smallest GPU this driver sees, else the
    smallest ``accelerator_type:<name>`` of the nodes (:data:`~lsh_tune.search.packing.ACCELERATOR_MEMORY`),
    else ``(None, why not)``."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count():
            props = min((torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())),
                        key=lambda p: p.total_memory)
            return float(props.total_memory), f"{props.name}, seen by the driver"
    except Exception:  # noqa: BLE001 - a broken CUDA setup: fall back to what Ray knows
        logger.debug("no GPU memory from torch.cuda", exc_info=True)
    return accelerator_memory(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))


def check_resources(cfg: SearchConfig, available: dict) -> None:
    """A local Ray instance must be able to place one trial (a cluster may still scale up).

    Raises:
        LSHUsageError: a local instance has fewer GPUs than one trial asks for.
    """
    gpus = float(available.get("GPU", 0.0))
    if cfg.gpus_per_trial > gpus:
        msg = (f"gpus_per_trial={cfg.gpus_per_trial} but the Ray instance has {gpus:g} GPU(s); pass "
               "--gpus-per-trial 0 to train on CPU")
        if cfg.address in (None, "local"):
            check_compute(replace(cfg, gpus_per_trial=0.0))  # preset paper: the estimate says why not CPU
            raise LSHUsageError(msg)
        logger.warning("%s (waiting for the cluster to scale up)", msg)
