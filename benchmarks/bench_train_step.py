"""Time the training step of one model preset under variants measured in one run (issue 19 item 1).

Variants (``--variants``, comma-separated):

* ``eager`` — today's eager step (``Trainer(cuda_graph=False)``; the RHN cell's fused backward on);
* ``graph`` — the step recorded in a CUDA graph (``Trainer(cuda_graph=True)``, CUDA only);
* ``unfused`` — the eager step with the RHN highway cell's plain autograd backward (RHN only);
* ``compiled`` — the eager step with the RHN cell through ``torch.compile`` (``Trainer(compile_cell=True)``,
  RHN only; compiled in the warm-up epoch, whose time each row prints as ``warmup_epoch_s``);
* ``graph_compiled`` — both: the compiled cell inside the CUDA graph (CUDA, RHN only; the default on CUDA).

Each variant trains a sparse candidate (sparsity 0.67, ER / magnitude / random, as the search does)
on a real-corpus slice of ``--batches`` full batches; the variants alternate for ``--repeat`` rounds
after one warm-up epoch each, and the median seconds per batch is reported with its ratio to the
first variant. Validation is one batch, so an epoch's time is its training steps.

    python benchmarks/bench_train_step.py --model rhn --preset small --variants unfused,eager --device cpu
    python benchmarks/bench_train_step.py --model rhn --preset paper --variants eager,graph,graph_compiled --device cuda

Prints one JSON line per variant and a summary line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

VARIANTS = ("eager", "graph", "unfused", "compiled", "graph_compiled")
RHN_ONLY = ("unfused", "compiled", "graph_compiled")


def _build(args, variant: str, corpus, device):
    from lsh_tune.models import build_model, get_preset
    from lsh_tune.sparse import SparseConfig, build_sparse_hook
    from lsh_tune.train import Trainer, seed_everything

    model_spec, train_spec = get_preset(args.model, args.preset)
    seed_everything(0)
    model = build_model(model_spec, len(corpus.vocab))
    if variant == "unfused":
        model.set_cell("autograd")
    hook = build_sparse_hook(model, SparseConfig(sparsity=0.67, sparse_init="ER", death="magnitude",
                                                 growth="random", death_rate=0.8), seed=0)
    spec = replace(train_spec, eval_batch_size=train_spec.batch_size)
    return Trainer(model, corpus, spec, seed=0, device=device, hooks=[hook], max_epochs=10 ** 6,
                   cuda_graph=variant.startswith("graph"), compile_cell=variant.endswith("compiled"))


def _epoch_seconds(trainer) -> float:
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.train_epoch()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="rhn")
    p.add_argument("--preset", default="small")
    p.add_argument("--variants", default="unfused,eager", help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--batches", type=int, default=10, help="full training batches per timed epoch")
    p.add_argument("--repeat", type=int, default=5, help="timed epochs per variant (alternating)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"--variants {','.join(bad)} not allowed; choose from {', '.join(VARIANTS)}")
    rhn_only = [v for v in variants if v in RHN_ONLY]
    if rhn_only and args.model != "rhn":
        p.error(f"--variants {','.join(rhn_only)} applies to --model rhn only")
    device = torch.device(args.device)

    from lsh_tune.data import load_corpus
    from lsh_tune.models import get_preset

    _, train_spec = get_preset(args.model, args.preset)
    corpus_name = "wikitext-2" if args.model == "awd_lstm_mos" else "ptb"
    bs, bptt = train_spec.batch_size, train_spec.bptt
    corpus = load_corpus(corpus_name, max_tokens=bs * bptt * args.batches + bs)
    corpus.valid = corpus.valid[:bs * bptt + 1]
    corpus.test = corpus.test[:bs * bptt + 1]
    trainers = {v: _build(args, v, corpus, device) for v in variants}
    warmup_s = {v: _epoch_seconds(t) for v, t in trainers.items()}  # allocator, handles, recording, compiling
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeat):
        for v, t in trainers.items():
            times[v].append(_epoch_seconds(t) / t.batches_per_epoch)
    base = statistics.median(times[variants[0]])
    summary = {"model": args.model, "preset": args.preset, "device": str(device),
               "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
               "torch": torch.__version__, "threads": torch.get_num_threads(), "batches": args.batches}
    for v in variants:
        med = statistics.median(times[v])
        gs = trainers[v].graph_step
        row = {"variant": v, "s_per_batch_median": med, "s_per_batch": times[v], "ratio_to_first": med / base,
               "graph_replays": gs.replays if gs else 0, "graph_failed": gs.failed if gs else None,
               "compiled_cell": getattr(trainers[v].model, "cell", None) == "compiled", "warmup_epoch_s": warmup_s[v]}
        summary[f"{v}_s_per_batch"] = med
        summary[f"{v}_over_{variants[0]}"] = med / base
        print(json.dumps(row), flush=True)
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
