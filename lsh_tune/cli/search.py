"""``lsh-tune search``: run or resume an LS-based hyperpruning search on Ray Tune."""
from __future__ import annotations

import argparse
import os
from typing import Any, Mapping

from lsh_tune.cli._dataclass_args import add_dataclass_args, dataclass_from_args
from lsh_tune.cli.common import non_negative_int, positive_int
from lsh_tune.errors import LSHUsageError

__all__ = ["add_search_arguments", "register", "run", "run_checked", "checked_config", "config_from_args",
           "table_options"]


def register(sub) -> None:
    """Add ``search``: one option per :class:`~lsh_tune.search.config.SearchConfig` field, plus the
    options that are not settings of the search (``--resume``, ``--json``, a local Ray's resources)."""
    p = sub.add_parser("search", help="LS-based hyperpruning search on Ray Tune",
                       description="Run (or --resume) an LSH search; outputs go to STORAGE_PATH/NAME.")
    add_search_arguments(p)
    p.set_defaults(func=run)


def add_search_arguments(p: argparse.ArgumentParser, defaults: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """The options of ``lsh-tune search`` on the parser ``p``.

    ``defaults`` (field name → ``{"default": ..., "help": ...}``) replaces the defaults (and help) of
    :class:`~lsh_tune.search.config.SearchConfig` fields, so that ``--help`` shows them: an experiment
    script's own settings (:mod:`lsh_tune.cli.experiment`).
    """
    from lsh_tune.search.config import SearchConfig

    add_dataclass_args(p, SearchConfig, overrides=defaults)
    p.add_argument("--table", default=None, metavar="TABLE",
                   help="train in the setting of a training table (lsh-tune table build): its model and training "
                        "specs, corpus slices and sparse init replace --preset/--max-tokens, and its model, corpus, "
                        "sparsity and LS sizes are the defaults; the real twin of `lsh-tune replay TABLE`")
    p.add_argument("--resume", action="store_true", help="continue the search in STORAGE_PATH/NAME")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    local = p.add_argument_group("a Ray instance started here (no --address, or --address local)")
    local.add_argument("--num-cpus", type=positive_int, default=None, help="its CPUs")
    local.add_argument("--num-gpus", type=non_negative_int, default=None, help="its GPUs")
    local.add_argument("--ray-temp-dir", default=None, help="its temp dir")


def config_from_args(args: argparse.Namespace):
    """The validated :class:`~lsh_tune.search.config.SearchConfig` of the parsed options."""
    from lsh_tune.search.config import SearchConfig

    return dataclass_from_args(SearchConfig, args, **table_options(args))


#: The search fields ``--table`` fills from the table (name → where in its settings), unless given.
_TABLE_DEFAULTS = {"model": lambda t: t.model_spec["model"], "corpus": lambda t: t.corpus,
                   "sparsity": lambda t: t.sparsity, "ls_k": lambda t: t.ls["k"], "ls_steps": lambda t: t.ls["steps"],
                   "ls_warmup": lambda t: t.ls["warmup"]}


def table_options(args: argparse.Namespace) -> dict:
    """The fields ``--table TABLE`` sets: ``setting`` (the table's training setting), ``space`` (its
    tabulated space, :meth:`~lsh_tune.table.Table.tabulated_space`, as a replay of it searches) and
    the :data:`_TABLE_DEFAULTS` the command line does not give (``{}`` without ``--table``).

    Raises:
        LSHUsageError: no table there, or ``--preset`` / ``--max-tokens`` given with it (the table
            fixes the model and the slices), or a given option that contradicts the table.
    """
    if getattr(args, "table", None) is None:
        return {}
    from lsh_tune.cli._dataclass_args import given_fields
    from lsh_tune.table import Table

    tabulated = Table(args.table, require_complete=False)
    table = tabulated.settings
    given = given_fields(args)
    for name in ("preset", "max_tokens"):
        if name in given:
            raise LSHUsageError(f"--{name.replace('_', '-')} {getattr(args, name)!r} cannot be combined with "
                                f"--table {args.table}: the table fixes the model and the corpus slices")
    out = {"setting": table.search_setting(), "space": tabulated.tabulated_space()}
    for name, value in _TABLE_DEFAULTS.items():
        if name not in given:
            out[name] = value(table)
        elif getattr(args, name) != value(table):
            raise LSHUsageError(f"--{name.replace('_', '-')} {getattr(args, name)!r} contradicts --table {args.table}, "
                                f"which has {name}={value(table)!r}; leave the option out")
    return out


def _check_ray_args(args: argparse.Namespace, cfg) -> None:
    """The options of a local Ray instance, and whether it can place one trial (before it starts).

    Raises:
        LSHUsageError: local-only options with a remote ``--address``, a local instance with
            fewer GPUs than ``--gpus-per-trial`` (CPU-only machines: pass ``--gpus-per-trial 0``, or
            leave the default ``auto``), or ``auto`` on a local instance without GPUs for a ``paper``
            search (:func:`~lsh_tune.search.run.preflight.check_compute`, as ``--gpus-per-trial 0``).
    """
    local = cfg.address in (None, "local")
    if not local and (args.num_cpus is not None or args.num_gpus is not None or args.ray_temp_dir):
        raise LSHUsageError(f"--num-cpus/--num-gpus/--ray-temp-dir only apply to a local Ray instance, not "
                            f"the running cluster at {cfg.address} (--address local starts a new local instance)")
    if not local or cfg.gpus_per_trial == 0:
        return
    if args.num_gpus is None:
        import torch

        gpus, source = torch.cuda.device_count(), "this machine has"
    else:
        gpus, source = args.num_gpus, "--num-gpus gives the local Ray instance"
    if cfg.gpus_per_trial == "auto":  # resolved once Ray runs (search/packing.py); without GPUs it will be 0
        if gpus == 0:
            from dataclasses import replace

            from lsh_tune.search.run.preflight import check_compute

            check_compute(replace(cfg, gpus_per_trial=0.0))  # preset paper: refused now, before Ray starts
        return
    if cfg.gpus_per_trial > gpus:
        raise LSHUsageError(f"gpus_per_trial={cfg.gpus_per_trial} but {source} {gpus} GPU(s); pass "
                            "--gpus-per-trial 0 to train on CPU")


def _init_ray(args: argparse.Namespace, address: str | None, verbose: int = 1) -> None:
    import ray

    from lsh_tune.search.tune.ray_output import quiet_tune, ray_init_kwargs

    quiet_tune(verbose)  # before ray.tune is first imported
    local = address in (None, "local")
    kwargs = {"address": address, "include_dashboard": False, **ray_init_kwargs(verbose)}
    if local:
        kwargs.update(num_cpus=args.num_cpus, num_gpus=args.num_gpus)
        if args.ray_temp_dir:
            kwargs["_temp_dir"] = os.path.abspath(args.ray_temp_dir)
    ray.init(**kwargs)


def checked_config(args: argparse.Namespace):
    """The config to run, with everything checked that can be before Ray starts (nothing is written).

    No address: resolved here (:func:`_resolve_address`), so a node of a running cluster joins it.
    A new search: the options. ``--resume``: the saved settings; given options must repeat them,
    except :data:`~lsh_tune.search.run.preflight.RESUME_MAY_CHANGE`, which apply (and are named on stderr).
    """
    import sys

    from lsh_tune.cli._dataclass_args import given_fields
    from lsh_tune.search.run.preflight import preflight, resume_config
    from lsh_tune.search.run.ray_address import check_ray_address

    if args.resume:
        options = {k: getattr(args, k) for k in given_fields(args)}
        if options.get("gpus_per_trial") == "auto":
            del options["gpus_per_trial"]  # auto on resume: the number auto chose when the search started
        options.update(table_options(args))
        cfg, applied = resume_config(args.storage_path, args.name, options)
        if applied:
            sys.stderr.write(f"lsh-tune: resuming with the saved settings; from this command: "
                             f"{', '.join('--' + k.replace('_', '-') for k in applied)}\n")
    else:
        cfg = config_from_args(args)
    cfg = preflight(cfg, resume=args.resume)
    cfg = _resolve_address(args, cfg)
    _check_ray_args(args, cfg)
    check_ray_address(cfg.address)  # a cluster answers there (a TCP connect, LSH_RAY_CONNECT_TIMEOUT_S)
    return cfg


def _resolve_address(args: argparse.Namespace, cfg):
    """``cfg`` with no address resolved as ``ray.init()`` resolves it (``RAY_ADDRESS``, else the cluster
    ``ray start`` left running on this machine, else ``local``); the line saying which goes to
    ``args.ray_where`` (:func:`run_checked` prints it)."""
    from dataclasses import replace

    from lsh_tune.search.run.ray_address import resolve_address

    def running_here():
        from lsh_tune.search.tune.tuner import running_cluster_address

        return running_cluster_address()

    address, args.ray_where = resolve_address(cfg.address, running_here)
    return cfg if address == cfg.address else replace(cfg, address=address)


def run(args: argparse.Namespace) -> int:
    return run_checked(args, checked_config(args))  # fail before starting Ray


def run_checked(args: argparse.Namespace, cfg, *, announce: bool = True) -> int:
    """Start (or join) Ray and run the search ``cfg`` that :func:`checked_config` returned for ``args``
    (``announce``: first say on stderr which Ray, a running cluster or a new local instance)."""
    import sys

    from lsh_tune.cli import print_json
    from lsh_tune.search.tune.tuner import run_search

    if announce and getattr(args, "ray_where", None):
        print(f"lsh-tune: {args.ray_where}", file=sys.stderr, flush=True)
    _init_ray(args, cfg.address, cfg.verbose)
    summary = run_search(cfg, resume=args.resume)
    if args.json:
        print_json(summary)
    else:
        from lsh_tune.search.views.session import closing_text

        print(closing_text(cfg.experiment()), end="")
    return 0 if summary.get("best") is not None else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m lsh_tune.cli.search ...``: the ``search`` subcommand alone (same errors/exit codes)."""
    import sys

    from lsh_tune.cli import OneLineParser, run_parsed

    parser = OneLineParser(prog="lsh-tune")
    register(parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser))
    return run_parsed(parser.parse_args(["search", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    raise SystemExit(main())
