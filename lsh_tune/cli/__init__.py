"""``lsh-tune`` command line: one module per subcommand, each with ``register(subparsers)``.

A subcommand module defines ``register(sub)`` that adds its parser and sets
``func=<callable(args) -> int>``. User errors (:class:`~lsh_tune.errors.LSHUsageError`) become a
single line on stderr and exit code 2; ``--json`` output is one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from lsh_tune.errors import LSHUsageError

__all__ = ["main", "print_json", "OneLineParser"]

# Subcommand modules under lsh_tune.cli, in the order shown by --help.
SUBCOMMANDS = ("info", "train", "train_sparse", "search", "ls")


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (``lsh-tune: error: ...``) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"lsh-tune: error: {message}\n")
        raise SystemExit(2)


def print_json(obj: dict) -> None:
    """Write ``obj`` as one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lsh-tune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"lsh_tune.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LSHUsageError as e:
        sys.stderr.write(f"lsh-tune: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("lsh-tune: interrupted\n")
        return 130
