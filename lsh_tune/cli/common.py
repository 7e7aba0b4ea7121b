"""Argument helpers shared by the subcommands."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsh_tune.cli._dataclass_args import add_dataclass_args, dataclass_values
from lsh_tune.data import KNOWN_CORPORA
from lsh_tune.models import MODELS, PRESETS, TrainSpec

__all__ = ["TRAIN_OVERRIDES", "add_corpus_args", "add_model_args", "add_run_args", "add_training_args",
           "comma_list", "non_negative_int", "positive_int", "print_result", "run_kwargs", "training_specs"]


def _int(kind: str, low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind} value: {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; must be an integer >= {low}")
        return v
    return parse


non_negative_int = _int("non-negative integer", 0)
positive_int = _int("positive integer", 1)


def comma_list(cast, option: str, example: str):
    """An argparse type: ``"a,b,c"`` -> a tuple of ``cast`` values (the error names ``option`` and ``example``)."""
    def parse(text: str) -> tuple:
        try:
            return tuple(cast(s) for s in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} {text!r}: comma-separated values, e.g. {example}") from None
    return parse


def add_model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--model", choices=MODELS, required=required, help="architecture")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="size preset (default: tiny)")


def add_corpus_args(p: argparse.ArgumentParser, *, default: str | None = "ptb") -> None:
    shown = f" (default: {default})" if default else ""
    p.add_argument("--corpus", default=default,
                   help=f"{', '.join(KNOWN_CORPORA)}, or a directory with train/valid/test .txt(.xz){shown}")
    p.add_argument("--data-dir", default=None, help="directory searched first for named corpora")
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="use only the first N tokens of each split (quick runs)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


#: The :class:`~lsh_tune.models.TrainSpec` fields ``train-dense``/``train-sparse`` can override, with
#: their parsers and help (each defaults to the preset's value).
TRAIN_OVERRIDES = {
    "epochs": {"type": non_negative_int, "help": "epochs (default: the preset's)"},
    "batch_size": {"type": positive_int, "help": "batch size (default: the preset's)"},
    "lr": {"help": "SGD learning rate, > 0 (default: the preset's)"},
}


def add_training_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``train-dense`` and ``train-sparse``: epochs, overrides, output, resume, run args."""
    add_dataclass_args(p, TrainSpec, only=TRAIN_OVERRIDES, overrides=TRAIN_OVERRIDES, optional=True)
    p.add_argument("--out", required=True, help="output directory (checkpoint.pt, metrics.jsonl, result.json)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    add_run_args(p)


def training_specs(args: argparse.Namespace):
    """``(model_spec, train_spec)`` of ``--model/--preset`` with the given :data:`TRAIN_OVERRIDES` applied.

    Raises:
        LSHUsageError: ``--lr`` is not > 0.
    """
    from lsh_tune.errors import LSHUsageError
    from lsh_tune.models import get_preset, with_overrides

    if args.lr is not None and not args.lr > 0:
        raise LSHUsageError(f"--lr {args.lr} is not allowed; must be > 0")
    model_spec, train_spec = get_preset(args.model, args.preset)
    return model_spec, with_overrides(train_spec, **dataclass_values(TrainSpec, args, drop_none=True))


def run_kwargs(args: argparse.Namespace, out: Path) -> dict:
    """The keywords a training run takes from the :func:`add_corpus_args`/:func:`add_training_args` flags.

    Progress goes to stderr unless ``--json`` (then stdout holds only the result).
    """
    return {"corpus": args.corpus, "data_dir": args.data_dir, "max_tokens": args.max_tokens, "out": out,
            "seed": args.seed, "device": args.device, "resume": args.resume,
            "log": None if args.json else sys.stderr}


def print_result(args: argparse.Namespace, result: dict, keys: tuple[str, ...]) -> None:
    """``result`` as one JSON object with ``--json``, else the entries ``keys`` on one line."""
    if args.json:
        from lsh_tune.cli import print_json

        print_json(result)
    else:
        print(json.dumps({k: result[k] for k in keys}))
