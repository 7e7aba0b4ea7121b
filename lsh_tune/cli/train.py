"""``train-dense``: train the dense model of a preset, checkpointing every epoch."""
from __future__ import annotations

import argparse
from pathlib import Path

from lsh_tune.cli.common import (add_corpus_args, add_model_args, add_training_args, print_result, run_kwargs,
                                 training_specs)
from lsh_tune.errors import LSHUsageError
from lsh_tune.train.run import CHECKPOINT_NAME

__all__ = ["register", "prepare_out_dir", "CHECKPOINT_NAME"]


def register(sub) -> None:
    p = sub.add_parser("train-dense", help="train the dense model; checkpoint every epoch; --resume continues")
    add_model_args(p)
    add_corpus_args(p)
    add_training_args(p)
    p.set_defaults(func=train_dense)


def prepare_out_dir(out: str, resume: bool) -> Path:
    """Check ``out``: refuse to overwrite a previous run unless resuming. Nothing is created here: the
    run writes its first checkpoint (creating ``out``) only once every setting has been checked."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise LSHUsageError(f"--out {out!r} exists and is not a directory")
    ckpt = path / CHECKPOINT_NAME
    if resume and not ckpt.is_file():
        raise LSHUsageError(f"--resume given but {str(ckpt)!r} does not exist")
    if not resume and ckpt.exists():
        raise LSHUsageError(f"{str(ckpt)!r} already exists; pass --resume to continue it or choose another --out")
    return path


def train_dense(args: argparse.Namespace) -> int:
    from lsh_tune.train.run import run_training

    model_spec, train_spec = training_specs(args)
    out = prepare_out_dir(args.out, args.resume)
    result = run_training(model_spec, train_spec, **run_kwargs(args, out))
    print_result(args, result, ("epochs", "val_ppl", "test_ppl", "checkpoint"))
    return 0
