"""Throughput of 1, 2, 4, 8 trials sharing one GPU (run by ``benchmarks/gpu_check.sh`` where CUDA is).

Each "trial" is a separate process, as a Ray Tune trial is: it builds a sparse candidate of the
``--preset`` model (sparsity 0.67, ER / magnitude / nonzeros / random, death rate 0.8), trains one
warm-up pass of ``--batches`` batches, waits at a barrier so that all start together, then trains
``--batches`` batches more and reports its seconds. For each number of trials n the aggregate
throughput is n·batches / (the slowest process's seconds), in batches per second, and its ratio to
one trial alone is what packing gains (measured on an H200 for the paper stacked LSTM: 2.26× at 4).

Prints one JSON line per n and a summary (the n with the best throughput), for
:mod:`lsh_tune.search.packing`'s table. ``--device cpu --preset tiny`` is a dry run of the script
(the test suite runs it; the numbers then mean nothing).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time


def _trial(model: str, preset: str, batches: int, device: str, barrier, results) -> None:
    import torch

    from lsh_tune.data import load_corpus
    from lsh_tune.models import build_model, get_preset
    from lsh_tune.sparse import SparseConfig, build_sparse_hook
    from lsh_tune.train import Trainer

    torch.set_num_threads(1)
    model_spec, train_spec = get_preset(model, preset)
    corpus_name = "wikitext-2" if model == "awd_lstm_mos" else "ptb"
    tokens = train_spec.batch_size * train_spec.bptt * batches + train_spec.batch_size
    corpus = load_corpus(corpus_name, max_tokens=max(tokens, 2_000))
    torch.manual_seed(0)
    net = build_model(model_spec, len(corpus.vocab))
    hook = build_sparse_hook(net, SparseConfig(sparsity=0.67, sparse_init="ER", death="magnitude",
                                               redistribution="nonzeros", growth="random", death_rate=0.8), seed=0)
    trainer = Trainer(net, corpus, train_spec, seed=0, device=device, hooks=[hook], max_epochs=3)
    trainer.train_epoch()                               # warm-up: cuDNN plans, the allocator
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    barrier.wait()
    t0 = time.perf_counter()
    trainer.train_epoch()
    sync()
    results.put((trainer.batches_per_epoch, time.perf_counter() - t0))


def measure(model: str, preset: str, n: int, batches: int, device: str) -> dict:
    """Aggregate training throughput of ``n`` concurrent trial processes on ``device``."""
    ctx = mp.get_context("spawn")                      # CUDA cannot be forked
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_trial, args=(model, preset, batches, device, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a trial process failed (exit codes {[p.exitcode for p in procs]})")
    slowest = max(s for _, s in got)
    total = sum(b for b, _ in got)
    return {"trials": n, "batches_each": got[0][0], "slowest_s": slowest, "batches_per_s": total / slowest}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stacked_lstm")
    p.add_argument("--preset", default="paper")
    p.add_argument("--batches", type=int, default=30, help="timed training batches per trial")
    p.add_argument("--trials", default="1,2,4,8", help="numbers of concurrent trials, comma-separated")
    p.add_argument("--device", default="cuda", help="cuda (the benchmark); cpu for a dry run")
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("gpu_packing: CUDA is not available here", file=sys.stderr)
            return 1
    rows = []
    for n in (int(x) for x in args.trials.split(",")):
        row = measure(args.model, args.preset, n, args.batches, args.device)
        row["speedup"] = row["batches_per_s"] / rows[0]["batches_per_s"] if rows else 1.0
        rows.append(row)
        print(json.dumps({"step": "packing", "model": args.model, **row}), flush=True)
    best = max(rows, key=lambda r: r["batches_per_s"])
    print(json.dumps({"summary": {"model": args.model, "preset": args.preset, "best_trials_per_gpu": best["trials"],
                                  "best_speedup": best["speedup"]}}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
