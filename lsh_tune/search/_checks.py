"""The value checks of every :class:`~lsh_tune.search.config.SearchConfig` field (Ray-free, no I/O).

:meth:`SearchConfig.__post_init__` calls :func:`check_search_fields` first, so a bad value is one
:class:`~lsh_tune.errors.LSHUsageError` naming the field, its value and what is allowed, whether it
came from the command line, an experiment script or Python. What needs the file system (the
corpus, a reference checkpoint, the experiment directory) is checked by
:func:`lsh_tune.search.run.preflight.preflight`, still before Ray starts.

Every check takes the config being built (a ``SearchConfig``, read by attribute): this module does
not import :mod:`lsh_tune.search.config`, which imports it.
"""
from __future__ import annotations

import re

from lsh_tune.errors import LSHTypeError, LSHUsageError, check_choice, check_int, check_name, check_range
from lsh_tune.lyapunov import CONVENTIONS
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS
from lsh_tune.lyapunov.spectrum import QR_ORDERS
from lsh_tune.models import MODELS, PRESETS, model_has_cell_state
from lsh_tune.search._generators import HPO_METHODS
from lsh_tune.search._ls_fit import LS_FITS
from lsh_tune.search.signals import RANKING_METRICS
from lsh_tune.search.layout import REFERENCE_CACHE
from lsh_tune.search.packing import AUTO
from lsh_tune.space import SearchSpace
from lsh_tune.storage import is_uri

__all__ = ["ADDRESS_FORMS", "RAY_CLIENT_PORT", "SETTING_KEYS", "VERBOSITY", "check_search_fields", "parse_ray_address"]

#: What ``--address`` / ``SearchConfig.address`` may be.
ADDRESS_FORMS = "auto, local, HOST:PORT or ray://HOST[:PORT]"
#: The Ray Client server's default port (``ray://HOST`` without a port).
RAY_CLIENT_PORT = 10001

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?$")


def parse_ray_address(address: str | None, what: str = "address") -> tuple[str, int] | None:
    """The ``(host, port)`` :func:`check_ray_address` probes, ``None`` for ``None``/``auto``/``local``.

    Raises:
        LSHUsageError: ``address`` is none of :data:`ADDRESS_FORMS` (naming ``what`` and the value).
    """
    if address is None or address in ("auto", "local"):
        return None
    bad = LSHUsageError(f"{what}={address!r} is not a Ray address; allowed: {ADDRESS_FORMS}")
    if not isinstance(address, str):
        raise bad
    client = address.startswith("ray://")
    match = _HOST_PORT.match(address[len("ray://"):] if client else address)
    if match is None or (match["port"] is None and not client):
        raise bad
    port = RAY_CLIENT_PORT if match["port"] is None else int(match["port"])
    if not 1 <= port <= 65535:
        raise LSHUsageError(f"{what}={address!r}: port {port} is out of range; allowed: 1-65535")
    return match["v6"] or match["host"], port

#: ``--verbose`` levels: no view, the live view, + Tune's reporter, + Tune's details
#: (:mod:`lsh_tune.search.tune.ray_output`).
VERBOSITY = (0, 1, 2, 3)
#: The keys of ``SearchConfig.setting`` (a training table's setting).
SETTING_KEYS = ("model_spec", "train_spec", "corpus", "train_tokens", "eval_tokens", "sparse")
#: Names the storage path already uses for its own directories.
RESERVED_NAMES = (REFERENCE_CACHE,)


def check_search_fields(cfg) -> None:
    """Raise on the first field of ``cfg`` whose value is not allowed.

    Raises:
        LSHUsageError: unknown choices, out-of-range or non-finite numbers, ``pool < 2``,
            ``final_k >= pool``, names that would escape the storage path ...
    """
    _check_choices(cfg)
    _check_counts(cfg)
    _check_rates_and_resources(cfg)
    _check_places(cfg)
    _check_ls(cfg)
    _check_setting(cfg)


def _check_choices(cfg) -> None:
    check_choice("model", cfg.model, MODELS)
    check_choice("preset", cfg.preset, PRESETS)
    check_choice("hpo", cfg.hpo, HPO_METHODS)
    check_choice("metric", cfg.metric, RANKING_METRICS)
    if not isinstance(cfg.space, SearchSpace):
        raise LSHTypeError(f"space={cfg.space!r} must be a lsh_tune.space.SearchSpace")


def _check_counts(cfg) -> None:
    check_int("pool", cfg.pool, 2, allow_none=True)
    check_int("rounds_every", cfg.rounds_every, 1)
    check_int("final_k", cfg.final_k, 1)
    if cfg.final_k >= cfg.pool_size:
        raise LSHUsageError(f"final_k={cfg.final_k} must be smaller than pool={cfg.pool_size}: with final_k >= pool no "
                            "candidate is ever removed (no selection happens); use --final-k < --pool")
    check_int("max_epochs", cfg.max_epochs, 1, allow_none=True)
    check_int("max_rounds", cfg.max_rounds, 1, allow_none=True)
    check_int("epoch_budget", cfg.epoch_budget, 1, allow_none=True)
    check_int("seed", cfg.seed, 0)
    check_int("max_tokens", cfg.max_tokens, 1, allow_none=True)
    check_int("reference_epochs", cfg.reference_epochs, 1, allow_none=True)
    check_int("max_failures", cfg.max_failures, 0)
    check_int("verbose", cfg.verbose, 0)
    if cfg.verbose not in VERBOSITY:
        raise LSHUsageError(f"verbose={cfg.verbose!r} is out of range; allowed: {', '.join(map(str, VERBOSITY))}")


def _check_rates_and_resources(cfg) -> None:
    check_range("sparsity", cfg.sparsity, 0.0, 1.0, low_open=True, high_open=True)
    check_range("grid_death_rate", cfg.grid_death_rate, 0.0, 1.0, low_open=True, high_open=True)
    if cfg.lr is not None:
        check_range("lr", cfg.lr, 0.0, None, low_open=True)
    _check_gpus(cfg)
    check_range("cpus_per_trial", cfg.cpus_per_trial, 0.0, None)
    if cfg.gpus_per_trial == 0 and cfg.cpus_per_trial == 0:
        raise LSHUsageError("gpus_per_trial=0 and cpus_per_trial=0: a trial needs some resource")


def _check_gpus(cfg) -> None:
    """``gpus_per_trial``: ``auto`` or a number >= 0; ``gpus_per_trial_auto`` (why auto chose it): text or None."""
    if isinstance(cfg.gpus_per_trial, str) and cfg.gpus_per_trial != AUTO:
        raise LSHUsageError(f"gpus_per_trial={cfg.gpus_per_trial!r} is not allowed; use auto or a number >= 0")
    if cfg.gpus_per_trial != AUTO:
        check_range("gpus_per_trial", cfg.gpus_per_trial, 0.0, None)
    _text("gpus_per_trial_auto", cfg.gpus_per_trial_auto, allow_none=True)


def _text(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise LSHUsageError(f"{name}={value!r} must be a non-empty string")


def _check_places(cfg) -> None:
    _text("corpus", cfg.corpus)
    _text("storage_path", cfg.storage_path)
    is_uri(cfg.storage_path, "storage_path")  # a malformed URI (s3://, s3:/bucket) is refused, never a local path
    check_name("name", cfg.name)
    if cfg.name in RESERVED_NAMES:
        raise LSHUsageError(f"name={cfg.name!r} is the storage path's own directory ({', '.join(RESERVED_NAMES)}); "
                            "choose another --name")
    _text("data_dir", cfg.data_dir, allow_none=True)
    _text("reference_checkpoint", cfg.reference_checkpoint, allow_none=True)
    _text("address", cfg.address, allow_none=True)
    parse_ray_address(cfg.address)  # its form only; whether a cluster answers: check_ray_address, before ray.init


def _check_ls(cfg) -> None:
    check_int("ls_k", cfg.ls_k, 1)
    check_int("ls_steps", cfg.ls_steps, 1)
    check_int("ls_warmup", cfg.ls_warmup, 0)
    check_int("ls_top", cfg.ls_top, 1, allow_none=True)
    check_choice("ls_state", cfg.ls_state, CONVENTIONS)
    if cfg.ls_state == "hc" and not model_has_cell_state(cfg.model):
        raise LSHUsageError(f"ls_state='hc' does not apply to model={cfg.model!r}: its state has no cell state c (h "
                            "only), so hc would be h under another name; use --ls-state h")
    check_choice("ls_qr", cfg.ls_qr, QR_ORDERS)
    check_choice("ls_embedding", cfg.ls_embedding, EMBEDDINGS)
    check_choice("ls_distance", cfg.ls_distance, METRICS)
    check_choice("ls_fit", cfg.ls_fit, LS_FITS)


def _check_setting(cfg) -> None:
    """``setting`` (a table's training setting): its keys, and that ``model``, ``corpus`` and
    ``max_tokens`` do not contradict it (the specs themselves are checked where they are built)."""
    setting = cfg.setting
    if setting is None:
        return
    if not isinstance(setting, dict) or set(setting) != set(SETTING_KEYS):
        got = sorted(setting) if isinstance(setting, dict) else type(setting).__name__
        raise LSHUsageError(f"setting={got!r} must be a dict with exactly the keys {', '.join(SETTING_KEYS)} "
                            "(lsh_tune.table.TableSettings.search_setting())")
    model = (setting.get("model_spec") or {}).get("model")
    if model != cfg.model:
        raise LSHUsageError(f"model={cfg.model!r} differs from the setting's model {model!r}; leave --model out "
                            "with --table (or give the table's)")
    if setting["corpus"] != cfg.corpus:
        raise LSHUsageError(f"corpus={cfg.corpus!r} differs from the setting's corpus {setting['corpus']!r}; leave "
                            "--corpus out with --table (or give the table's)")
    if cfg.max_tokens is not None:
        raise LSHUsageError(f"max_tokens={cfg.max_tokens} cannot be combined with a table's setting: the table fixes "
                            f"the slices (train_tokens={setting['train_tokens']}, eval_tokens={setting['eval_tokens']})")
    for name in ("train_tokens", "eval_tokens"):
        check_int(name, setting[name], 1, allow_none=True)
    if not isinstance(setting["sparse"], dict):
        raise LSHUsageError(f"setting sparse={setting['sparse']!r} must be a dict of sparse-init options")
