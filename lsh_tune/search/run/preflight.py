"""What a search checks before Ray starts and before it writes anything (Ray-free).

:func:`preflight` is called by ``lsh-tune search`` (and the experiment scripts) before ``ray.init``
and by :func:`~lsh_tune.search.tune.tuner.run_search` before it starts Ray: the values of the fields are
checked when the :class:`~lsh_tune.search.config.SearchConfig` is built (``search/_checks.py``); this
module checks what needs the file system — the storage path first (:func:`check_storage`: a local
directory writable, an object store probed by a write, a read back and a delete), the experiment
directory (a new search, or one to resume and its saved files, :func:`check_experiment_dir`), the
corpus (readable, long enough for the batches and the LS sequences) and a ``--reference-checkpoint``
(readable, dense, same architecture and vocabulary as the search) — and whether the compute suffices
(:func:`check_compute`: a ``paper`` search without GPUs is refused with the estimates of
:mod:`lsh_tune.search.run.cost`). Each failure is one :class:`~lsh_tune.errors.LSHUsageError` naming
the value or file and what is allowed.

``--resume`` keeps the saved settings. Options given with it must repeat them, except those in
:data:`RESUME_MAY_CHANGE` (where Ray runs, where the storage is mounted, how much Tune prints),
which this run applies (:func:`resume_config`).
"""
from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Mapping

from lsh_tune.data import check_corpus_size
from lsh_tune.errors import LSHUsageError, check_name
from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.layout import CONFIG_FILE, STATE_FILE
from lsh_tune.search.packing import AUTO
from lsh_tune.search.run.cost import (EPOCH_COSTS, PRESET_SCHEDULES, TABLE_GPUS, cpu_slots, estimate_search,
                                      format_duration)
from lsh_tune.storage import Storage

__all__ = ["NETWORK_FILESYSTEMS", "RESUME_MAY_CHANGE", "check_compute", "check_experiment_dir",
           "check_shared_storage", "check_storage", "filesystem_type", "preflight", "read_saved_config",
           "resume_config"]

#: Settings a resumed search takes from this run (every other given option must equal the saved one).
RESUME_MAY_CHANGE = ("address", "storage_path", "verbose")
#: Keys every saved search config has held; a JSON file without them is not an lsh_tune search.
_SAVED_KEYS = ("model", "preset", "corpus", "sparsity", "hpo", "metric", "pool", "rounds_every", "final_k", "seed")


def preflight(cfg: SearchConfig, *, resume: bool = False) -> SearchConfig:
    """Check everything about ``cfg`` that needs the file system; return the config to run.

    On ``resume`` that is the saved config (``storage_path``/``address``/``verbose`` from ``cfg``),
    checked together with the saved state it will continue.

    Raises:
        LSHUsageError: one line naming the value or file at fault.
    """
    check_storage(cfg.storage_path, cfg.name)  # first: every check after it reads the storage
    if resume:
        _check_resumable(cfg)
    cfg = check_experiment_dir(cfg, resume)
    _check_corpus(cfg)
    return cfg


def check_experiment_dir(cfg: SearchConfig, resume: bool) -> SearchConfig:
    """The config to run: ``cfg`` for a new search, the saved one (storage/address from ``cfg``) on resume.

    Raises:
        LSHUsageError: resuming where there is nothing, or starting where a search exists, or a
            ``paper`` search without GPUs (:func:`check_compute`).
    """
    exp = cfg.experiment()
    if resume:
        if not exp.is_file(CONFIG_FILE) or not exp.is_file(STATE_FILE):
            raise LSHUsageError(f"nothing to resume in {exp.uri_of()} (no {CONFIG_FILE}/{STATE_FILE})")
        saved = SearchConfig.load(exp)
        cfg = replace(saved, storage_path=cfg.storage_path, address=cfg.address, verbose=cfg.verbose)
    elif exp.is_file(CONFIG_FILE) or exp.is_file(STATE_FILE):
        raise LSHUsageError(f"{exp.uri_of()} already holds a search: pass --resume or choose another --name")
    check_compute(cfg)
    return cfg


def check_compute(cfg: SearchConfig) -> None:
    """A ``paper`` search needs GPUs: with ``gpus_per_trial=0`` it is refused with the estimates
    (``auto`` once it is resolved: ``lsh-tune search`` predicts a local instance's GPUs before Ray
    starts, :func:`lsh_tune.search.tune.tuner.resolve_gpus` checks again what Ray has).

    Raises:
        LSHUsageError: ``preset='paper'`` and ``gpus_per_trial=0`` (the message names the CPU time,
            measured, the GPU time, from FLOP counts, and the ``small`` preset's CPU time).
    """
    if cfg.preset != "paper" or cfg.gpus_per_trial == AUTO or cfg.gpus_per_trial > 0 \
            or (cfg.model, cfg.preset) not in EPOCH_COSTS:
        return
    slots = cpu_slots(cfg)
    cpu = estimate_search(cfg, "cpu", slots=slots)
    gpu = estimate_search(cfg, "gpu", slots=TABLE_GPUS)
    small_cfg = replace(cfg, preset="small", max_epochs=None, reference_epochs=None, **PRESET_SCHEDULES["small"])
    small = estimate_search(small_cfg, "cpu", slots=cpu_slots(small_cfg))  # what --preset small would run
    raise LSHUsageError(
        f"preset='paper' with gpus_per_trial=0: on CPU this search would take about {format_duration(cpu.total_s)} "
        f"(the dense reference alone {format_duration(cpu.reference_s)}, {format_duration(cpu.epoch_s)} per epoch; "
        f"measured epoch times, {slots} trial(s) at a time on {os.cpu_count()} cores); with GPUs about "
        f"{format_duration(gpu.total_s)} on {gpu.slots} GPUs (from FLOP counts). Use --preset small (about "
        f"{format_duration(small.total_s)} on CPU) or --gpus-per-trial 1 on a machine or cluster with GPUs "
        "(docs/cluster.md)")


def _experiment(cfg: SearchConfig) -> Storage:
    return Storage(cfg.storage_path).child(cfg.name)


def _check_resumable(cfg: SearchConfig) -> None:
    """The directory holds a search that started: a readable config and a readable state."""
    exp = _experiment(cfg)
    where = exp.uri_of()
    if not exp.exists():
        raise LSHUsageError(f"nothing to resume: {where} does not exist (check --storage-path and --name)")
    if not exp.is_file(CONFIG_FILE):
        raise LSHUsageError(f"nothing to resume: {where} is not an lsh_tune experiment (it has no {CONFIG_FILE})")
    if not exp.is_file(STATE_FILE):
        raise LSHUsageError(f"nothing to resume: the search in {where} never started (no {STATE_FILE}); run it "
                            "again without --resume")
    read_saved_config(exp)
    SearchLedger.load(exp)  # names a corrupt state, spectra or reference file


def read_saved_config(exp: Storage) -> SearchConfig:
    """The :class:`SearchConfig` saved in ``exp`` (:data:`~lsh_tune.search.config.CONFIG_FILE`).

    Raises:
        LSHUsageError: the file is unreadable or corrupt, not a search config (foreign JSON,
            unknown settings) or holds a value no longer allowed — naming the file.
    """
    where = exp.uri_of(CONFIG_FILE)
    try:
        raw = exp.read_json(CONFIG_FILE)
    except (OSError, ValueError) as e:
        raise LSHUsageError(f"cannot read the saved search {where} (corrupt or truncated: {e}); it cannot be "
                            "resumed") from None
    if not isinstance(raw, dict) or any(k not in raw for k in _SAVED_KEYS):
        raise LSHUsageError(f"{where} is not an lsh_tune search config (needs {', '.join(_SAVED_KEYS)})")
    unknown = sorted(set(raw) - {f.name for f in fields(SearchConfig)})
    if unknown:
        raise LSHUsageError(f"{where} holds settings this lsh_tune does not know: {unknown}")
    try:
        return SearchConfig.from_dict(raw)
    except (LSHUsageError, TypeError, ValueError, KeyError) as e:
        raise LSHUsageError(f"{where} holds a setting that is not allowed: {e}") from None


def resume_config(storage_path: str, name: str, options: Mapping[str, Any]) -> tuple[SearchConfig, list[str]]:
    """The saved search ``<storage_path>/<name>`` with this run's :data:`RESUME_MAY_CHANGE` options.

    Args:
        storage_path, name: where the search is.
        options: the settings given with ``--resume`` (field name → value), e.g. from the command
            line's :func:`~lsh_tune.cli._dataclass_args.given_fields`.

    Returns:
        (config to run, the names of the given options that were applied).

    Raises:
        LSHUsageError: nothing to resume there, or options that contradict the saved settings
            (every one named with the saved value).
    """
    check_name("name", name)
    base = SearchConfig(storage_path=storage_path, name=name)  # a stand-in that only locates the directory
    check_storage(storage_path, name)
    _check_resumable(base)
    saved = read_saved_config(_experiment(base))
    contradict = [f"--{k.replace('_', '-')} {v!r} (saved: {getattr(saved, k)!r})" for k, v in sorted(options.items())
                  if k not in (*RESUME_MAY_CHANGE, "name") and v != getattr(saved, k)]
    if contradict:
        raise LSHUsageError(f"--resume continues the search in {_experiment(base).uri_of()} with its saved settings; "
                            f"these options contradict them: {', '.join(contradict)}. Drop them, or start a new search "
                            f"with another --name (options that may change on resume: "
                            f"{', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE)})")
    applied = sorted(k for k in options if k in RESUME_MAY_CHANGE and options[k] != getattr(saved, k))
    changes = {k: options[k] for k in applied}
    # the address given now (even the saved one: "local" must stay local), else resolved afresh
    return replace(saved, **{"storage_path": storage_path, "name": name, "address": options.get("address"),
                             **changes}), applied


def check_storage(storage_path: str, name: str) -> None:
    """The experiment ``<storage_path>/<name>`` can be written, checked before anything reads or writes it.

    A local directory must be (or be creatable in) a writable directory, checked without writing.
    An object-store URI gets :meth:`~lsh_tune.storage.Storage.check_access`: a probe object is
    written under the experiment prefix, read back and deleted, each request failing in seconds.

    Raises:
        LSHUsageError: one line naming the path or URI, and on an object store the operation and
            the cause (endpoint unreachable, no such bucket, credentials refused, access denied).
    """
    exp = Storage(storage_path).child(name)
    if not exp.is_local:
        exp.check_access()
        return
    path = Path(exp.local_root)
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        raise LSHUsageError(f"storage_path={storage_path!r}: {path} is a file, not a directory")
    read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    if read_only or not os.access(path, os.W_OK | os.X_OK):
        why = "a read-only file system" if read_only else "no write permission"
        raise LSHUsageError(f"storage_path={storage_path!r} is not writable ({path}: {why})")


def _check_corpus(cfg: SearchConfig) -> None:
    """The corpus loads and every split is long enough; a reference checkpoint fits the search."""
    from lsh_tune.search.run.reference import search_corpus

    corpus = search_corpus(cfg)
    model_spec, train_spec = cfg.specs()
    ls = cfg.ls_config()
    uses_ls = cfg.signal().needs_reference
    check_corpus_size(corpus, batch_size=train_spec.batch_size, eval_batch_size=train_spec.eval_batch_size,
                      ls_rows=ls.total_steps if uses_ls else None, ls_k=ls.k if uses_ls else None)
    if uses_ls and cfg.ls_top is not None:
        _check_ls_top(cfg, model_spec)
    if cfg.reference_checkpoint:
        check_reference_checkpoint(cfg.reference_checkpoint, model_spec, len(corpus.vocab))


def _check_ls_top(cfg: SearchConfig, model_spec) -> None:
    from lsh_tune.lyapunov import state_size
    from lsh_tune.models import build_model

    n = state_size(build_model(model_spec, 2), cfg.ls_state)
    if cfg.ls_top > n:
        raise LSHUsageError(f"ls_top={cfg.ls_top} exceeds the state size N={n} of {cfg.model}/{cfg.size_label} "
                            f"(ls_state={cfg.ls_state!r}); use --ls-top <= {n}")


def check_reference_checkpoint(path: str, model_spec, vocab_size: int) -> None:
    """``path`` (a file or an object-store URI) must be a readable dense checkpoint of ``model_spec``
    over ``vocab_size`` words.

    Raises:
        LSHUsageError: unreadable, corrupt or foreign; sparse (it has masks); another architecture
            (the differing fields are named) or another vocabulary.
    """
    from lsh_tune.train.checkpoint import read_checkpoint

    where = f"--reference-checkpoint {path!r}"
    try:
        store, name = Storage.split(path)
        if not store.is_file(name):
            raise LSHUsageError(f"{store.uri_of(name)} does not exist or is not a file")
        with store.local_file(name) as local:
            ckpt = read_checkpoint(local, required=("model_spec", "model", "vocab_size"))
    except LSHUsageError as e:
        raise LSHUsageError(f"{where}: {e}") from None
    if ckpt.get("masks"):
        raise LSHUsageError(f"{where} is a sparse checkpoint (it holds masks); the reference must be dense "
                            "(lsh-tune train-dense)")
    want, have = model_spec.to_dict(), ckpt["model_spec"]
    if have != want:
        diff = [f"{k} {have.get(k)!r} (search: {v!r})" for k, v in want.items() if have.get(k) != v] \
            if isinstance(have, dict) else [f"model_spec {have!r}"]
        raise LSHUsageError(f"{where} holds another architecture than the search's {model_spec.model}: "
                            f"{', '.join(diff)}")
    if ckpt["vocab_size"] != vocab_size:
        raise LSHUsageError(f"{where} was trained on {ckpt['vocab_size']!r} words; the search's corpus has "
                            f"{vocab_size} (another corpus or vocabulary)")


#: File system types (``/proc/mounts``) that the nodes of a cluster can share; any ``fuse.*`` counts too
#: (s3fs, gcsfuse, sshfs, ...).
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "efs", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs",
                                 "glusterfs", "ceph", "cephfs", "9p", "virtiofs", "fuse", "fuseblk"})


def filesystem_type(path: str, mounts: str) -> str | None:
    """The type of the file system holding ``path`` (an absolute path) in ``mounts`` (the text of
    ``/proc/mounts``): that of the longest mount point above it, ``None`` where none is."""
    best, kind = -1, None
    path = os.path.normpath(path)
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), parts[2]
    return kind


def check_shared_storage(storage_path: str, is_local: bool, driver_ip: str, node_ips, mounts: str | None) -> None:
    """Refuse a local storage path on a cluster with nodes on other hosts, before anything starts: their
    trials would write checkpoints and results where the driver never reads them (and fail late).

    Passes: an object-store URI (``is_local`` False), every alive node on the driver's host (``node_ips``
    all ``driver_ip``: one machine, or several Ray nodes on it), or a path on a network file system
    (:data:`NETWORK_FILESYSTEMS`, ``fuse.*``, per ``mounts``, the text of ``/proc/mounts``; ``None``:
    unknown, not refused).

    Raises:
        LSHUsageError: one line naming the path, its file system, the other hosts and the fix.
    """
    others = sorted({ip for ip in node_ips if ip != driver_ip})
    if not is_local or not others or mounts is None:
        return
    kind = filesystem_type(os.path.abspath(os.path.realpath(storage_path)), mounts)
    if kind is None or kind in NETWORK_FILESYSTEMS or kind.startswith("fuse."):
        return
    raise LSHUsageError(f"storage_path={storage_path!r} is a local directory ({kind}) but the Ray cluster has nodes "
                        f"on other hosts ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); give "
                        "--storage-path a directory every node mounts (NFS, EFS, ...) or an object-store URI "
                        "(s3://bucket/path, gs://...)")
