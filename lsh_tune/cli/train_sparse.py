"""``train-sparse``: train one dynamic-sparse candidate and report perplexities and densities."""
from __future__ import annotations

import argparse

from lsh_tune.cli._dataclass_args import add_dataclass_args, dataclass_from_args
from lsh_tune.cli.common import (add_corpus_args, add_model_args, add_training_args, positive_int, print_result,
                                 run_kwargs, training_specs)

__all__ = ["register"]


def _sparse_options() -> dict[str, dict]:
    """Help and choices of the :class:`~lsh_tune.sparse.SparseConfig` options, and where the command
    differs from the dataclass (default ``ER``, the name ``--prune-interval``).

    Choices are the registries of :mod:`lsh_tune.sparse`; a field without an entry still gets its
    option (with no help text) — field metadata in ``SparseConfig`` would replace this table.
    """
    from lsh_tune.sparse import DEATH_MODES, GROWTH_MODES, MASK_GROUPS, REDISTRIBUTION_MODES, SPARSE_INITS

    return {
        "sparsity": {"help": "fraction of masked weights that are zero, in (0,1)"},
        "sparse_init": {"choices": SPARSE_INITS, "default": "ER", "help": "initial layer densities"},
        "death": {"choices": DEATH_MODES, "help": "prune criterion"},
        "growth": {"choices": GROWTH_MODES, "help": "regrowth criterion"},
        "redistribution": {"choices": REDISTRIBUTION_MODES, "help": "how regrowth is split over tensors"},
        "death_rate": {"help": "initial death rate in (0,1), cosine-decayed"},
        "prune_interval_epochs": {"flag": "--prune-interval", "type": positive_int,
                                  "help": "epochs between prune-and-regrow steps"},
        "init_scale": {"help": "rescale surviving initial weights by 1/sqrt(layer density)"},
        "mask_gradients": {"help": "zero inactive weights' gradients before clipping (Selfish-RNN: false)"},
        "masked": {"metavar": "GROUPS", "help": f"comma-separated groups to mask, of {', '.join(MASK_GROUPS)}"},
        "momentum_beta": {"help": "decay of the gradient moving average of the momentum modes"},
        "threshold_init": {"help": "starting threshold of the threshold death mode"},
    }


def register(sub) -> None:
    from lsh_tune.sparse import SparseConfig

    p = sub.add_parser("train-sparse", help="train one sparse candidate (Selfish-RNN DST); report ppl and density")
    add_model_args(p)
    add_corpus_args(p)
    add_dataclass_args(p, SparseConfig, overrides=_sparse_options())
    add_training_args(p)
    p.set_defaults(func=train_sparse)


def sparse_config_from_args(args: argparse.Namespace):
    """The validated :class:`~lsh_tune.sparse.SparseConfig` of the parsed flags."""
    from lsh_tune.sparse import SparseConfig

    return dataclass_from_args(SparseConfig, args)


def train_sparse(args: argparse.Namespace) -> int:
    from lsh_tune.cli.train import prepare_out_dir
    from lsh_tune.train_sparse import run_sparse_training

    sparse = sparse_config_from_args(args)
    model_spec, train_spec = training_specs(args)
    out = prepare_out_dir(args.out, args.resume)
    result = run_sparse_training(model_spec, train_spec, sparse, **run_kwargs(args, out))
    print_result(args, result, ("epochs", "val_ppl", "test_ppl", "density", "target_density", "checkpoint"))
    if not args.json:
        for name, t in result["per_tensor"].items():
            print(f"  {name:<28} {str(tuple(t['shape'])):<16} density {t['density']:.4f}")
    return 0
