"""Sparse-training epoch time / dense epoch time for the same model, measured in one run.

Dense and sparse epochs are interleaved ABBA-style (dense, sparse, sparse, dense, ...) so that
drifting machine load hits both alike; every sparse epoch ends with a prune-and-regrow step
(the trainer plans more epochs than are run, so none is the "last" one). The reported ratio is
(total sparse epoch time) / (total dense epoch time), each epoch's time being the trainer's
``epoch_time_s`` (training batches, the epoch-end hooks and validation).

Usage::

    PYTHONPATH=. python benchmarks/bench_sparse.py --model stacked_lstm --preset tiny \
        --max-tokens 20000 --pairs 2 --json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from lsh_tune.data import load_corpus
from lsh_tune.models import build_model, get_preset
from lsh_tune.sparse import SparseConfig, build_sparse_hook
from lsh_tune.train import Trainer

TARGET = 1.15


def _trainer(model_spec, train_spec, corpus, sparse: SparseConfig | None, seed: int):
    torch.manual_seed(seed)
    model = build_model(model_spec, len(corpus.vocab))
    hooks = [] if sparse is None else [build_sparse_hook(model, sparse, seed=seed)]
    return Trainer(model, corpus, train_spec, seed=seed, device="cpu", hooks=hooks, max_epochs=1000), hooks


def run(args) -> dict:
    """Time ``2 * pairs`` dense and as many sparse epochs; return the timings and the ratio."""
    torch.set_num_threads(args.threads)
    corpus = load_corpus("ptb", max_tokens=args.max_tokens)
    model_spec, train_spec = get_preset(args.model, args.preset)
    sparse = SparseConfig(args.sparsity, args.sparse_init, args.death, args.growth, args.redistribution,
                          args.death_rate)
    dense_tr, _ = _trainer(model_spec, train_spec, corpus, None, args.seed)
    sparse_tr, hooks = _trainer(model_spec, train_spec, corpus, sparse, args.seed)
    times = {"dense": [], "sparse": []}
    order = ["dense", "sparse", "sparse", "dense"] * args.pairs
    t0 = time.perf_counter()
    for kind in order:
        tr = dense_tr if kind == "dense" else sparse_tr
        times[kind].append(tr.train_epoch()["epoch_time_s"])
    ratio = sum(times["sparse"]) / sum(times["dense"])
    return {"model": args.model, "preset": args.preset, "max_tokens": args.max_tokens,
            "batches_per_epoch": dense_tr.batches_per_epoch, "sparse_config": sparse.to_dict(),
            "threads": args.threads, "dense_epoch_s": times["dense"], "sparse_epoch_s": times["sparse"],
            "ratio": ratio, "target": TARGET, "meets_target": ratio <= TARGET,
            "prune_steps": hooks[0].masking.prune_steps, "density": hooks[0].masking.active() / hooks[0].masking.total,
            "wall_s": time.perf_counter() - t0, "torch": torch.__version__, "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stacked_lstm")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--max-tokens", type=int, default=20000)
    p.add_argument("--pairs", type=int, default=2, help="ABBA blocks: each gives 2 dense + 2 sparse epochs")
    p.add_argument("--sparsity", type=float, default=0.67)
    p.add_argument("--sparse-init", default="ER")
    p.add_argument("--death", default="magnitude")
    p.add_argument("--growth", default="random")
    p.add_argument("--redistribution", default="nonzeros")
    p.add_argument("--death-rate", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    res = run(args)
    if args.json:
        sys.stdout.write(json.dumps(res, sort_keys=True) + "\n")
    else:
        print(f"dense epochs (s): {[round(t, 2) for t in res['dense_epoch_s']]}")
        print(f"sparse epochs (s): {[round(t, 2) for t in res['sparse_epoch_s']]}")
        print(f"sparse/dense epoch time: {res['ratio']:.3f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
