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


#: What ``lsh-tune --help`` says above the commands: one paragraph.
DESCRIPTION = (
    "LS-based hyperpruning (LSH) of recurrent language models on Ray Tune: `search` runs (or resumes) a "
    "search that ranks sparse candidates by how far their Lyapunov spectra are from the dense model's, "
    "`report` summarises it; `train-dense` and `train-sparse` train a single model, `ls` computes a "
    "Lyapunov spectrum, `table build` trains a training table and `replay` replays a search against it in "
    "seconds; `data-info` and `model-info` describe a corpus and a preset. `lsh-tune COMMAND --help` lists "
    "a command's options.")


class _Paragraph(argparse.HelpFormatter):
    """Wraps the description as one paragraph without splitting a command name at its hyphen."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    from lsh_tune import package_version

    parser = OneLineParser(prog="lsh-tune", description=DESCRIPTION, formatter_class=_Paragraph)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
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
