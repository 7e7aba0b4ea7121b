"""What the experiment scripts (``experiments/*.py``) share: ``--preset tiny|small|paper``, Ray, where the results go.

A script is a few lines: its model, corpus, sparsity and search as ``lsh-tune search`` options
(``SCRIPT``) and ``main(SCRIPT, doc=__doc__)``. It imports nothing but this installed package, so
a script copied anywhere runs (``cp experiments/ptb_rhn.py /tmp && python /tmp/ptb_rhn.py --help``),
and in a Ray job (``ray job submit --working-dir . -- python experiments/ptb_rhn.py ...``) the
package shipped in the working directory is the one that runs.

The preset chooses the size and the schedule (:data:`SCHEDULES`): ``paper`` is the paper's setting
(Table A1 models, LSH-TPE, E = 3, pool 24), ``small`` the ``small`` models on the whole corpus
(hours to days on CPU, ``docs/cluster.md``), ``tiny`` a one-minute end-to-end run on a slice.
Every option of ``lsh-tune search`` is an option of the script; the script's settings and its
preset's schedule are the *defaults* of those options, so ``--help`` shows what the script runs
and any option given overrides it, and ``--resume`` continues a search with its saved settings.
Every preset runs with ``--gpus-per-trial auto``: no GPU in the Ray cluster → the trials train on
CPU; GPUs → several trials per GPU (:mod:`lsh_tune.search.packing`).

Ray: ``--address`` (default ``RAY_ADDRESS``, which a Ray job sets) joins a running cluster;
without either, the cluster ``ray start`` left running on this machine (as ``ray.init()``), else a
local instance is started here; ``--address local`` always starts a new local instance. The script
says which, and where the results and the TensorBoard log go. A ``paper`` search on a local instance without a GPU is
refused before anything starts, with the estimate of how long it would take on CPU.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Sequence

__all__ = ["SCHEDULES", "build_parser", "main", "script_defaults"]

#: The preset a script runs without ``--preset``.
DEFAULT_PRESET = "paper"


def _schedules() -> dict[str, list[str]]:
    """The search settings of each preset as options (model, corpus and sparsity come from the script):
    :data:`lsh_tune.search.run.cost.PRESET_SCHEDULES`, the one source (the cost model estimates them)."""
    from lsh_tune.search.run.cost import PRESET_SCHEDULES

    return {preset: [x for name, value in settings.items() for x in (f"--{name.replace('_', '-')}", str(value))]
            for preset, settings in PRESET_SCHEDULES.items()}


def __getattr__(name: str):
    if name == "SCHEDULES":  # computed on use: importing this module stays light (no torch)
        return _schedules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _search_parser() -> argparse.ArgumentParser:
    from lsh_tune.cli import OneLineParser
    from lsh_tune.cli.search import add_search_arguments

    parser = OneLineParser(allow_abbrev=False)
    add_search_arguments(parser)
    return parser


def script_defaults(script: Sequence[str], preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """The search settings (field name → value) a script runs at ``preset``: its own options
    (``script``), ``--preset preset`` and the preset's :data:`SCHEDULES`.

    Raises:
        SystemExit: an option of ``script`` that ``lsh-tune search`` does not know (exit code 2).
    """
    from lsh_tune.cli._dataclass_args import given_fields

    args = _search_parser().parse_args([*script, "--preset", preset, *_schedules()[preset]])
    return {name: getattr(args, name) for name in given_fields(args)}


def _defaults_with_help(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``add_search_arguments`` overrides: each value as the default, the field's own ``(default: ...)``
    note dropped from its help (``--help`` then shows the script's value, once)."""
    from dataclasses import fields

    from lsh_tune.search.config import SearchConfig

    helps = {f.name: f.metadata.get("help", "") for f in fields(SearchConfig)}
    out = {}
    for name, value in values.items():
        text = re.sub(r"\s*\(default: [^)]*\)", "", helps.get(name, ""))
        out[name] = {"default": value, "help": text}
    out["address"] = {"default": os.environ.get("RAY_ADDRESS") or None,
                      "help": re.sub(r"\s*\(default: [^)]*\)", "", helps["address"])
                      + " (default: $RAY_ADDRESS, which a Ray job sets; without it a cluster running on this machine, "
                      "else a local instance)"}
    return out


def _epilog(preset: str) -> str:
    lines = [f"The defaults shown are --preset {preset}'s. The presets' schedules (any option given overrides):"]
    lines += [f"  --preset {name}: {' '.join(opts)}" for name, opts in _schedules().items()]
    lines += ["Ray: with --address (or RAY_ADDRESS, which `ray job submit` sets) the search joins that cluster,",
              "else a cluster running on this machine (ray start), else a local instance (--address local: always).",
              "Continue an interrupted search: the same command with --resume."]
    return "\n".join(lines)


def build_parser(script: Sequence[str], preset: str = DEFAULT_PRESET, *, prog: str | None = None,
                 description: str | None = None) -> argparse.ArgumentParser:
    """The command line of a script: every ``lsh-tune search`` option, with the script's settings at
    ``preset`` as the defaults (:func:`script_defaults`)."""
    from lsh_tune.cli import OneLineParser
    from lsh_tune.cli.search import add_search_arguments

    values = script_defaults(script, preset)
    parser = OneLineParser(prog=prog, description=description, epilog=_epilog(preset), allow_abbrev=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_search_arguments(parser, _defaults_with_help(values))
    return parser


def _preset(argv: Sequence[str]) -> str:
    """The ``--preset`` of ``argv`` (the last one given), else :data:`DEFAULT_PRESET`; an unknown one
    is left for the full parser to refuse."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", default=DEFAULT_PRESET)
    known, _ = pre.parse_known_args(list(argv))
    return known.preset if known.preset in _schedules() else DEFAULT_PRESET


def _gpus_here() -> int:
    import torch

    return torch.cuda.device_count()


def _say_where(cfg, how: str) -> None:
    from lsh_tune.search.views.tensorboard import TENSORBOARD_DIR

    if cfg.address == "local":
        how = f"{how}: {os.cpu_count()} CPUs, {_gpus_here()} GPUs here"
    exp = cfg.experiment()
    print(f"{cfg.model} on {cfg.corpus}, preset {cfg.preset}: {how}", flush=True)
    print(f"results: {exp.uri_of()} · TensorBoard: tensorboard --logdir {exp.uri_of(TENSORBOARD_DIR)}", flush=True)


def _run(args: argparse.Namespace) -> int:
    from lsh_tune.cli.search import checked_config, run_checked

    cfg = checked_config(args)  # everything that can fail before Ray starts (a paper search without GPU too)
    _say_where(cfg, args.ray_where)  # which Ray: --address, RAY_ADDRESS, a cluster running here, or a local one
    return run_checked(args, cfg, announce=False)


def main(script: Sequence[str], argv: Sequence[str] | None = None, *, doc: str | None = None,
         prog: str | None = None) -> int:
    """Run the search of a script: ``script`` holds its model, corpus, sparsity, search and name options,
    ``doc`` (its docstring) is what ``--help`` shows above the options.

    Returns the exit code of ``lsh-tune search`` (2: bad input or a refused paper run, nothing written).
    """
    from lsh_tune.cli import run_parsed

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(script, _preset(argv), prog=prog, description=doc)
    args = parser.parse_args(argv)
    args.func = _run
    return run_parsed(args)
