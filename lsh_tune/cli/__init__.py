"""``lsh-tune`` command line: one module per subcommand, each with ``register(subparsers)``.

A subcommand module defines ``register(sub)`` that adds its parser and sets
``func=<callable(args) -> int>``. User errors (:class:`~lsh_tune.errors.LSHUsageError`) become a
single line on stderr and exit code 2, a state file that cannot be written
(:class:`~lsh_tune.errors.LSHStorageError`) a single line and exit code 1; ``--json`` output is
one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from lsh_tune.errors import LSHStorageError, LSHUsageError

__all__ = ["main", "print_json", "run_parsed", "OneLineParser"]

# Subcommand modules under lsh_tune.cli, in the order shown by --help.
SUBCOMMANDS = ("info", "train", "train_sparse", "search", "report", "ls", "table", "replay")


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


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed subcommand: bad input is one line and exit 2 (:class:`LSHUsageError`), a state file
    that cannot be written one line and exit 1 (:class:`LSHStorageError`), Ctrl-C exit 130, a closed
    output pipe exit 141 (as a shell reports SIGPIPE)."""
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe fails here, not at interpreter exit
        return code
    except LSHUsageError as e:
        sys.stderr.write(f"lsh-tune: error: {_one_line(e)}\n")
        return 2
    except LSHStorageError as e:
        sys.stderr.write(f"lsh-tune: error: {_one_line(e)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("lsh-tune: interrupted\n")
        return 130
    except BrokenPipeError:  # `lsh-tune … | head`: the reader left; no traceback (Python's own advice)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def main(argv: list[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv))
