"""``lsh-tune ls``: the Lyapunov spectrum of a checkpoint or of a freshly initialised preset model.

Exponents are natural-log expansion rates per time step, sorted descending, averaged over the
first ``K`` columns of the first validation batch (paper Eq. 1).
"""
from __future__ import annotations

import argparse
import math
import os
import time

from lsh_tune.cli._dataclass_args import add_dataclass_args, choices_metavar, dataclass_from_args
from lsh_tune.data import KNOWN_CORPORA
from lsh_tune.errors import LSHUsageError

__all__ = ["register", "run"]


def _ls_options() -> dict[str, dict]:
    """Flags, help and choices of the :class:`~lsh_tune.lyapunov.LSConfig` options.

    ``--steps`` defaults to ``None``: the checkpoint's or preset's BPTT (else 35) is used.
    """
    from lsh_tune.lyapunov import CONVENTIONS
    from lsh_tune.lyapunov.spectrum import DTYPES, JACOBIAN_METHODS, QR_ORDERS

    return {
        "k": {"flag": "-k", "metavar": "K", "help": "validation sequences K"},
        "steps": {"default": None, "metavar": "T", "help": "averaged steps T (default: the preset's BPTT, else 35)"},
        "warmup": {"help": "warm-up steps before averaging"},
        "state": {"choices": CONVENTIONS, "help": "h (paper: c held fixed) or hc (full LSTM state)"},
        "top": {"metavar": "N", "help": "only the N leading exponents"},
        "dtype": {"choices": DTYPES, "help": "dtype of the Jacobians and the QR"},
        "jacobian": {"choices": JACOBIAN_METHODS, "help": "closed-form Jacobians (built-in models) or autograd"},
        "qr": {"choices": QR_ORDERS,
               "help": "layered (one QR per layer), joint (the authors' one QR over all layers) or cholesky "
                       "(layered's exponents by batched Cholesky QR: for GPUs)"},
    }


def register(sub) -> None:
    """Add the ``ls`` parser to the ``lsh-tune`` subparsers."""
    from lsh_tune.lyapunov import LSConfig
    from lsh_tune.models import MODELS, PRESETS

    p = sub.add_parser("ls", help="Lyapunov spectrum of a model (paper Eq. 1)",
                       description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT",
                     help="a search's best_model.pt or a dense/sparse training checkpoint (.pt): a path or a URI "
                          "such as s3://bucket/prefix/name/best_model.pt")
    src.add_argument("--model", metavar=choices_metavar(MODELS), help="architecture (with --preset and --corpus)")
    p.add_argument("--preset", metavar=choices_metavar(PRESETS), help="preset of --model")
    p.add_argument("--init-seed", type=int, default=0, metavar="S", help="seed of the initialisation (default 0)")
    p.add_argument("--corpus", help=f"{', '.join(KNOWN_CORPORA)} or a directory (default: the checkpoint's corpus)")
    p.add_argument("--data-dir", help="extra directory searched for the corpus")
    add_dataclass_args(p, LSConfig, overrides=_ls_options())
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plot", metavar="PNG", help="save a plot of the spectrum")
    p.set_defaults(func=run)


def _load_model(args: argparse.Namespace):
    """(model, corpus, default steps, description) from --checkpoint or --model/--preset."""
    from lsh_tune.data import load_corpus

    if args.checkpoint:
        from lsh_tune.lyapunov import load_checkpoint_model

        if args.preset:
            raise LSHUsageError("--preset goes with --model, not with --checkpoint")
        model, ckpt = load_checkpoint_model(args.checkpoint)
        bptt = (ckpt.get("train_spec") or {}).get("bptt", 35)
        name = ckpt["corpus"]
        if not args.corpus and name not in KNOWN_CORPORA and ckpt.get("corpus_dir"):
            name = ckpt["corpus_dir"]  # a corpus given as a directory
        corpus = load_corpus(args.corpus or name, args.data_dir)
        return model, corpus, int(bptt), {"checkpoint": str(args.checkpoint)}
    import torch

    from lsh_tune.models import PRESETS, build_model, get_preset

    if not args.preset:
        raise LSHUsageError(f"--model needs --preset ({', '.join(PRESETS)})")
    if not args.corpus:
        raise LSHUsageError(f"--model needs --corpus ({', '.join(KNOWN_CORPORA)} or a directory)")
    spec, train = get_preset(args.model, args.preset)
    corpus = load_corpus(args.corpus, args.data_dir)
    torch.manual_seed(args.init_seed)
    model = build_model(spec, len(corpus.vocab))
    desc = {"model": args.model, "preset": args.preset, "init_seed": args.init_seed}
    return model, corpus, train.bptt, desc


def _check_state_applies(state: str, model) -> None:
    """``--state hc`` only for a model with a cell state (asked of its registry entry).

    Raises:
        LSHUsageError: ``hc`` for a model whose state is ``h`` alone (RHN), naming both.
    """
    if state != "hc":
        return
    from lsh_tune.models import entry_for_model

    entry = entry_for_model(model)
    if entry is None:  # an unregistered model: its own state says
        name, has_c = type(model).__name__, any(len(layer) > 1 for layer in model.init_state(1))
    else:
        name, has_c = entry.name, entry.has_cell_state
    if not has_c:
        raise LSHUsageError(f"state='hc' does not apply to model={name!r}: its state has no cell state c (h only), "
                            "so hc would be h under another name; use --state h")


def _check_plot_path(path: str | None) -> None:
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise LSHUsageError(f"--plot {path!r}: directory {parent!r} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise LSHUsageError("--plot needs matplotlib (pip install matplotlib)") from None


def _plot(path: str, ls, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(ls) + 1), ls, lw=1.5)
    ax.set_xlabel("index i")
    ax.set_ylabel("λ_i (nats / step)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _jsonable(values) -> list:
    return [float(v) if math.isfinite(v) else None for v in values]


def run(args: argparse.Namespace) -> int:
    from lsh_tune.cli import print_json
    from lsh_tune.lyapunov import LSConfig, ls_summary, lyapunov_spectrum, state_size, validation_tokens

    _check_plot_path(args.plot)
    model, corpus, bptt, desc = _load_model(args)
    corpus_name = corpus.name
    cfg = dataclass_from_args(LSConfig, args, steps=args.steps if args.steps is not None else bptt)
    _check_state_applies(cfg.state, model)
    if len(corpus.vocab) != model.vocab_size:
        raise LSHUsageError(f"corpus {corpus_name!r} has {len(corpus.vocab)} words; the model expects "
                            f"{model.vocab_size}")
    tokens = validation_tokens(corpus, cfg.k, cfg.total_steps)
    t0 = time.perf_counter()
    ls = lyapunov_spectrum(model, tokens, cfg)
    seconds = time.perf_counter() - t0
    summary = ls_summary(ls)
    n = state_size(model, cfg.state)
    if args.plot:
        _plot(args.plot, ls, f"{desc.get('model', 'checkpoint')} N={n} K={cfg.k} T={cfg.steps}")
    if args.json:
        print_json({"command": "ls", "source": desc, "corpus": corpus_name, "n": n, "config": cfg.to_dict(),
                    "seconds": seconds, "log_base": "e", "units": "nats per time step",
                    "summary": summary, "exponents": _jsonable(ls), "plot": args.plot})
        return 0
    print(f"Lyapunov spectrum of {desc} on {corpus_name}: N={n}, {ls.size} exponents "
          f"(K={cfg.k}, T={cfg.steps}, warm-up {cfg.warmup}, state {cfg.state}, {cfg.qr} QR, {cfg.dtype}) "
          f"in {seconds:.2f} s")
    print(f"natural log per step: max {summary['max']:.4f}  mean {summary['mean']:.4f}  "
          f"variance {summary['variance']:.4f}  min {summary['min']:.4f}  (-inf: {summary['neg_inf']}, "
          f"NaN: {summary['nan']})")
    head = " ".join(f"{v:.4f}" for v in ls[:10])
    print(f"leading exponents: {head}{' ...' if ls.size > 10 else ''}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
