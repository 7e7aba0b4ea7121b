"""``data-info`` and ``model-info``."""
from __future__ import annotations

import argparse

from lsh_tune.cli.common import add_corpus_args, add_model_args
from lsh_tune.data import load_corpus
from lsh_tune.models import build_model, count_parameters, get_preset

__all__ = ["register"]

_VOCAB = {"ptb": 10000, "wikitext-2": 33278}


def register(sub) -> None:
    p = sub.add_parser("data-info", help="token counts per split and vocabulary size")
    add_corpus_args(p, default=None)
    p.set_defaults(func=data_info)
    p.add_argument("--json", action="store_true")
    q = sub.add_parser("model-info", help="parameter counts, hidden sizes and layers of a preset")
    add_model_args(q)
    q.add_argument("--vocab-size", type=int, default=None,
                   help="vocabulary size (default: PTB 10000; awd_lstm_mos: WikiText-2 33278)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=model_info)


def data_info(args: argparse.Namespace) -> int:
    if args.corpus is None:
        args.corpus = "ptb"
    info = load_corpus(args.corpus, args.data_dir, max_tokens=args.max_tokens).info()
    if args.json:
        from lsh_tune.cli import print_json
        print_json(info)
    else:
        print(f"corpus {info['corpus']} ({info['directory']})")
        for split, n in info["tokens"].items():
            print(f"  {split:<6} {n:>10,} tokens")
        print(f"  vocab  {info['vocab_size']:>10,}")
    return 0


def model_info(args: argparse.Namespace) -> int:
    spec, train = get_preset(args.model, args.preset)
    vocab = args.vocab_size or (_VOCAB["wikitext-2"] if args.model == "awd_lstm_mos" else _VOCAB["ptb"])
    model = build_model(spec, vocab)
    counts = count_parameters(model)
    info = {"model": args.model, "preset": args.preset, "vocab_size": vocab,
            "parameters": counts["total"], "per_tensor": counts["per_tensor"],
            "emb": spec.emb, "hidden_sizes": list(spec.hidden), "layers": len(spec.hidden),
            "recurrence_depth": spec.depth, "tied": spec.tied,
            "model_spec": spec.to_dict(), "train_spec": train.to_dict()}
    if args.json:
        from lsh_tune.cli import print_json
        print_json(info)
    else:
        print(f"{args.model}/{args.preset}: {counts['total']:,} parameters ({counts['total'] / 1e6:.2f}M), "
              f"emb {spec.emb}, hidden {list(spec.hidden)}, layers {len(spec.hidden)}, vocab {vocab}")
        for name, n in counts["per_tensor"].items():
            print(f"  {name:<32} {n:>12,}")
    return 0
