"""``lsh-tune report EXP [--md FILE] [--json]``: summarise a finished or interrupted search (no Ray)."""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register", "run"]


def register(sub) -> None:
    p = sub.add_parser("report", help="summarise a finished or interrupted search",
                       description="The chosen candidate against the unigram baseline, the dense reference and the "
                                   "other finalists; every round's ranking; the time split; the survival of each "
                                   "hyperparameter value; Spearman's rho of each round's metric with final "
                                   "perplexity. Reads the experiment's files only.")
    p.add_argument("experiment", metavar="EXP", help="the experiment: STORAGE_PATH/NAME (a directory or a URI)")
    p.add_argument("--md", metavar="FILE", default=None, help="also write the report as Markdown to FILE")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsh_tune.cli import print_json
    from lsh_tune.errors import LSHUsageError
    from lsh_tune.search.views.history import SearchHistory
    from lsh_tune.search.views.report import build_report, render_markdown
    from lsh_tune.storage import atomic_write_text

    history = SearchHistory.load(args.experiment)
    for warning in history.warnings:  # e.g. a torn last event of a killed (or running) search: skipped
        sys.stderr.write(f"lsh-tune: warning: {warning}\n")
    report = build_report(history)
    markdown = render_markdown(report)
    if args.md:
        try:
            atomic_write_text(args.md, markdown)
        except OSError as e:  # LSHStorageError included: name the option, not a state file to resume
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise LSHUsageError(f"--md {args.md!r}: cannot write it ({reason})") from None
    if args.json:
        print_json(report)
    else:
        print(markdown, end="")
    return 0
