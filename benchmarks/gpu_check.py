"""GPU check of the paper-scale path (run by ``benchmarks/gpu_check.sh`` on a machine with CUDA).

1. A sparse candidate (sparsity 0.67, ER / magnitude / nonzeros / random, death rate 0.8) and the
   dense reference of the ``paper`` preset train for a few batches on CUDA (an epoch over a slice
   of the preset's corpus (PTB; WikiText-2 for AWD-LSTM-MoS) of ``--batches`` batches); the time per batch
   is scaled to a full epoch of that corpus.
2. The full Lyapunov spectrum (the search's LS settings: K = 2, 35 + 10 steps, layered QR) of the
   trained candidate on CUDA, timed, and its share of a full epoch.
3. The same model's LS on CUDA and on CPU in float64 (top ``--top`` exponents, fewer steps so the
   CPU side stays short) must agree to 1e-6.

Prints one JSON object per step and a summary; exits 1 when CUDA is missing or the LS disagree.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed_epoch(trainer) -> tuple[float, dict]:
    _sync(trainer.device)
    t0 = time.perf_counter()
    m = trainer.train_epoch()
    _sync(trainer.device)
    return time.perf_counter() - t0, m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stacked_lstm")
    p.add_argument("--batches", type=int, default=20, help="training batches per timed epoch")
    p.add_argument("--top", type=int, default=64, help="exponents compared CPU vs CUDA")
    p.add_argument("--preset", default="paper", help="paper (the check); tiny for a dry run")
    p.add_argument("--device", default="cuda", help="cuda (the check); cpu for a dry run of the script")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here", file=sys.stderr)
        return 1
    from lsh_tune.data import load_corpus
    from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum, validation_tokens
    from lsh_tune.models import build_model, get_preset
    from lsh_tune.sparse import SparseConfig, build_sparse_hook
    from lsh_tune.train import Trainer

    model_spec, train_spec = get_preset(args.model, args.preset)
    corpus_name = "wikitext-2" if args.model == "awd_lstm_mos" else "ptb"   # the presets' corpora (Table A1)
    full = load_corpus(corpus_name)
    full_batches = (len(full.train) // train_spec.batch_size - 1) // train_spec.bptt
    tokens_needed = train_spec.batch_size * train_spec.bptt * args.batches + train_spec.batch_size
    corpus = load_corpus(corpus_name, max_tokens=max(tokens_needed, 2_000))
    out: dict = {"gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else "none (cpu dry run)", "torch": torch.__version__, "model": args.model,
                 "full_epoch_batches": full_batches}

    timings = {}
    for kind in ("reference", "candidate"):
        torch.manual_seed(0)
        model = build_model(model_spec, len(corpus.vocab))
        hooks = []
        if kind == "candidate":
            cfg = SparseConfig(sparsity=0.67, sparse_init="ER", death="magnitude", redistribution="nonzeros",
                               growth="random", death_rate=0.8)
            hooks = [build_sparse_hook(model, cfg, seed=0)]
        trainer = Trainer(model, corpus, train_spec, seed=0, device=device, hooks=hooks, max_epochs=2)
        _timed_epoch(trainer)                                   # warm-up (cuDNN, allocator)
        seconds, m = _timed_epoch(trainer)
        per_batch = seconds / trainer.batches_per_epoch
        timings[kind] = per_batch * full_batches
        print(json.dumps({"step": f"train_{kind}", "batches": trainer.batches_per_epoch, "s_per_batch": per_batch,
                          "full_epoch_s": timings[kind], "val_ppl": m["val_ppl"]}), flush=True)
    out["epoch_s"] = timings

    tokens = validation_tokens(full, k=2, length=45)
    ls_cfg = LSConfig()
    with trainer.evaluation_weights():
        lyapunov_spectrum(trainer.model, tokens, LSConfig(k=1, steps=2, warmup=1))   # warm-up
        _sync(device)
        t0 = time.perf_counter()
        ls = lyapunov_spectrum(trainer.model, tokens, ls_cfg)
        _sync(device)
        ls_s = time.perf_counter() - t0
    out["ls_s"] = ls_s
    out["ls_share_of_epoch"] = ls_s / timings["candidate"]
    print(json.dumps({"step": "ls_cuda_float32", "n": int(ls.size), "seconds": ls_s, "max": float(ls[0]),
                      "share_of_candidate_epoch": out["ls_share_of_epoch"]}), flush=True)

    cmp_cfg = LSConfig(k=1, steps=10, warmup=5, top=args.top, dtype="float64")
    with trainer.evaluation_weights():
        gpu = lyapunov_spectrum(trainer.model, tokens, cmp_cfg)
        trainer.model.to("cpu")
        t0 = time.perf_counter()
        cpu = lyapunov_spectrum(trainer.model, tokens, cmp_cfg)
        cpu_s = time.perf_counter() - t0
    finite = np.isfinite(gpu) & np.isfinite(cpu)
    err = float(np.max(np.abs(gpu[finite] - cpu[finite]))) if finite.any() else math.inf
    same_inf = bool(np.array_equal(np.isneginf(gpu), np.isneginf(cpu)))
    out["ls_cpu_vs_cuda_max_abs_diff"] = err
    ok = err <= 1e-6 and same_inf
    print(json.dumps({"step": "ls_cpu_vs_cuda_float64", "top": args.top, "max_abs_diff": err,
                      "same_neg_inf": same_inf, "cpu_s": cpu_s, "ok": ok}), flush=True)
    print(json.dumps({"summary": out, "ok": ok}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
