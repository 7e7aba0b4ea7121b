"""What the three experiment scripts share: ``--preset tiny|small|paper``, Ray, where the results go.

A script fixes the model, corpus, sparsity and the search of one of the paper's results; the
preset chooses the size (:data:`SCHEDULES`): ``paper`` is the paper's setting (Table A1 models,
LSH-TPE, E = 3, pool 24), ``small`` a few hours on a laptop, ``tiny`` a one-minute end-to-end run on
a slice. Every preset runs with ``--gpus-per-trial auto``: no GPU in the Ray cluster → the trials train
on CPU; GPUs → several trials per GPU from the model's memory and measured throughput
(:mod:`lsh_tune.search.packing`; the paper stacked LSTM: 4 per H200). Any ``lsh-tune search`` option
given after them overrides them.

Ray: ``--address auto`` (or ``RAY_ADDRESS``) connects to a running cluster; otherwise a local
instance is started on this machine. The script says which. Without a GPU here, ``paper`` is
refused with an estimate of how long it would take on CPU (:func:`lsh_tune.search.estimate.check_compute`).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

__all__ = ["SCHEDULES", "main"]

#: The search settings of each preset (model, corpus and sparsity come from the script).
SCHEDULES = {
    "paper": ["--pool", "24", "--rounds-every", "3", "--final-k", "2", "--cpus-per-trial", "2"],
    "small": ["--pool", "8", "--rounds-every", "2", "--final-k", "2", "--cpus-per-trial", "1"],
    "tiny": ["--pool", "3", "--rounds-every", "1", "--final-k", "2", "--max-epochs", "2", "--reference-epochs", "1",
             "--max-tokens", "2000", "--cpus-per-trial", "1"],
}


def _parse(args: list[str]):
    from lsh_tune.cli import OneLineParser
    from lsh_tune.cli.search import register

    parser = OneLineParser(prog="lsh-tune")
    register(parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser))
    return parser.parse_args(["search", *args])


def _gpus_here() -> int:
    import torch

    return torch.cuda.device_count()


def _say_where(cfg, address: str | None) -> None:
    from lsh_tune.search.tensorboard import TENSORBOARD_DIR

    if address:
        how = f"connecting to the running Ray cluster at {address!r}"
    else:
        how = f"no --address and no RAY_ADDRESS: starting a local Ray instance ({os.cpu_count()} CPUs, " \
              f"{_gpus_here()} GPUs here)"
    exp = cfg.experiment()
    print(f"{cfg.model} on {cfg.corpus}, preset {cfg.preset}: {how}", flush=True)
    print(f"results: {exp.uri_of()} · TensorBoard: tensorboard --logdir {exp.uri_of(TENSORBOARD_DIR)}", flush=True)


def main(script: list[str], argv: list[str] | None = None) -> int:
    """Run the search of a script: ``script`` holds its model, corpus, sparsity, search and name options.

    Returns the exit code of ``lsh-tune search`` (2: bad input or a refused paper run, nothing written).
    """
    from lsh_tune.cli.search import config_from_args
    from lsh_tune.cli.search import main as search_main
    from lsh_tune.errors import LSHUsageError
    from lsh_tune.search.estimate import check_compute

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset", choices=sorted(SCHEDULES), default="paper")
    pre.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None)
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    local = known.address in (None, "local")
    args = [*script, "--preset", known.preset, *SCHEDULES[known.preset], "--gpus-per-trial", "auto",
            *([] if local else ["--address", known.address]), *rest]
    try:
        cfg = config_from_args(_parse(args))
        if local and _gpus_here() == 0:
            check_compute(replace(cfg, gpus_per_trial=0.0))  # paper without a GPU (auto → 0): refused, before Ray
    except LSHUsageError as e:
        sys.stderr.write(f"lsh-tune: error: {' '.join(str(e).split())}\n")
        return 2
    _say_where(cfg, None if local else known.address)
    return search_main(args)
