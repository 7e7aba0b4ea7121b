"""``train-sparse``: train one dynamic-sparse candidate and report perplexities and densities."""
from __future__ import annotations

import argparse
import json
import sys

from lsh_tune.cli.common import (add_corpus_args, add_model_args, add_training_args, positive_int,
                                 training_specs)

__all__ = ["register"]


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use true or false")


def register(sub) -> None:
    from lsh_tune.sparse import DEATH_MODES, GROWTH_MODES, MASK_GROUPS, REDISTRIBUTION_MODES, SPARSE_INITS

    p = sub.add_parser("train-sparse", help="train one sparse candidate (Selfish-RNN DST); report ppl and density")
    add_model_args(p)
    add_corpus_args(p)
    p.add_argument("--sparsity", type=float, required=True, help="fraction of masked weights that are zero, in (0,1)")
    p.add_argument("--sparse-init", default="ER", help=f"one of {', '.join(SPARSE_INITS)} (default: ER)")
    p.add_argument("--death", default="magnitude", help=f"one of {', '.join(DEATH_MODES)} (default: magnitude)")
    p.add_argument("--growth", default="random", help=f"one of {', '.join(GROWTH_MODES)} (default: random)")
    p.add_argument("--redistribution", default="none",
                   help=f"one of {', '.join(REDISTRIBUTION_MODES)} (default: none)")
    p.add_argument("--death-rate", type=float, default=0.5, help="initial death rate in (0,1) (default: 0.5)")
    p.add_argument("--prune-interval", type=positive_int, default=1, help="epochs between prune-and-regrow steps")
    p.add_argument("--init-scale", type=_bool, default=True,
                   help="rescale surviving initial weights by 1/sqrt(layer density) (default: true)")
    p.add_argument("--mask-gradients", type=_bool, default=False,
                   help="zero inactive weights' gradients before clipping (default: false, as Selfish-RNN)")
    p.add_argument("--masked", default=",".join(MASK_GROUPS),
                   help=f"comma-separated groups to mask, of {', '.join(MASK_GROUPS)} (default: all)")
    add_training_args(p)
    p.set_defaults(func=train_sparse)


def sparse_config_from_args(args: argparse.Namespace):
    """The validated :class:`~lsh_tune.sparse.SparseConfig` of the parsed flags."""
    from lsh_tune.sparse import SparseConfig

    masked = tuple(g.strip() for g in args.masked.split(",") if g.strip())
    return SparseConfig(args.sparsity, args.sparse_init, args.death, args.growth, args.redistribution,
                        args.death_rate, prune_interval_epochs=args.prune_interval, init_scale=args.init_scale,
                        mask_gradients=args.mask_gradients, masked=masked)


def train_sparse(args: argparse.Namespace) -> int:
    from lsh_tune.cli.train import prepare_out_dir
    from lsh_tune.train_sparse import run_sparse_training

    sparse = sparse_config_from_args(args)
    model_spec, train_spec = training_specs(args)
    out = prepare_out_dir(args.out, args.resume)
    result = run_sparse_training(model_spec, train_spec, sparse, corpus=args.corpus, data_dir=args.data_dir,
                                 max_tokens=args.max_tokens, out=out, seed=args.seed, device=args.device,
                                 resume=args.resume, log=None if args.json else sys.stderr)
    if args.json:
        from lsh_tune.cli import print_json
        print_json(result)
    else:
        keys = ("epochs", "val_ppl", "test_ppl", "density", "target_density", "checkpoint")
        print(json.dumps({k: result[k] for k in keys}))
        for name, t in result["per_tensor"].items():
            print(f"  {name:<28} {str(tuple(t['shape'])):<16} density {t['density']:.4f}")
    return 0
