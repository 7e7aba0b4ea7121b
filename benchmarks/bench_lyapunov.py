"""Benchmarks of the Lyapunov-spectrum engine (issue 4). Not part of the test suite.

    PYTHONPATH=. python benchmarks/bench_lyapunov.py [--only a,b,c,d,e] [--threads N] [--device D]
        [--repeat R] [--width W]

(a) LS time (K=2, T=35, warm-up 10) / one training epoch on full PTB, ``small`` preset (epoch
    timed in full) and ``paper`` preset (epoch extrapolated from timed batches); target ≤ 2 %.
(b) full spectrum at N = 1500 (one LSTM layer of the paper's width, h convention): the engine
    against the straightforward computation (per-sample ``jacrev`` Jacobian, explicit J·Q,
    ``torch.linalg.qr`` with Q formed); target ≥ 3× faster (float32), exponents equal to 1e-5
    (checked in float64 too, where float32 roundoff no longer dominates the last exponents).
(c) top-64 with warm-up at N = 1500 against (b)'s straightforward full spectrum (target ≥ 20×),
    and the ranking of a pool of PTB-trained tiny candidates by LS distance, top-k vs full
    spectra (Kendall τ ≥ 0.8).
(d) the same pool: ``layered`` (default) vs ``joint`` (the authors' order) full spectra, against
    the K = 2 vs K = 10 difference, and the rankings they give.
(e) the fast spectrum (``qr="cholesky"``) against ``qr="layered"`` in one run: a 2 × 650 stacked
    LSTM (N = 1300 under ``h``, 2600 under ``hc``; recurrent weights ×3 as in (b), dense and 80 %
    magnitude-pruned), K = 2, T = 35 + 10 warm-up, float32: times (best of ``--repeat``,
    interleaved; with the process CPU time, the fair measure with ``--threads 1`` on a shared machine),
    max |Δλ| against ``layered`` and against the float64 ``layered`` spectrum, and the
    Cholesky QRs factorised with a float64 Gram matrix or by Householder (breakdowns). ``--device
    cuda`` runs (e) on a GPU; ``--width 1500`` at the paper's width (N = 3000 under ``h``).

(a) times the ``layered`` QR, its Cholesky-QR twin ``cholesky`` and the authors' ``joint`` one; (b)
and (c) use a one-layer model, where ``layered`` and ``joint`` are the same computation.
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch
from torch import nn

from lsh_tune.data import batchify, load_corpus
from lsh_tune.lyapunov import (LSConfig, ls_distances, lyapunov_spectrum, rank_candidates, reference_spectrum,
                               validation_tokens)
from lsh_tune.models import StackedLSTM, build_model, get_preset


def _train_batches(model, data, bptt: int, lr: float, clip: float, n_batches: int | None):
    """Plain SGD over ``data`` (n_steps, B); returns (seconds, batches)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    state = model.init_state(data.size(1))
    t0, done = time.perf_counter(), 0
    for i in range(0, data.size(0) - 1, bptt):
        if n_batches is not None and done >= n_batches:
            break
        x, y = data[i:i + bptt], data[i + 1:i + 1 + bptt]
        if y.size(0) < x.size(0):
            x = x[:y.size(0)]
        state = model.detach_state(state)
        logp, state = model(x, state)
        loss = nn.functional.nll_loss(logp.reshape(-1, logp.size(-1)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        done += 1
    return time.perf_counter() - t0, done


def _ls_time(model, corpus, cfg: LSConfig) -> float:
    tokens = validation_tokens(corpus, cfg.k, cfg.total_steps)
    t0 = time.perf_counter()
    lyapunov_spectrum(model, tokens, cfg)
    return time.perf_counter() - t0


QUICK = False  # --quick: a smoke test of the script, numbers meaningless


def bench_a(corpus) -> None:
    print("(a) LS time (K=2, T=35, warm-up 10) / one training epoch on full PTB (stacked LSTM)")
    steps, warmup = (2, 0) if QUICK else (35, 10)
    configs = {"full layered": LSConfig(k=2, steps=steps, warmup=warmup, qr="layered"),
               "full cholesky": LSConfig(k=2, steps=steps, warmup=warmup, qr="cholesky"),
               "full joint": LSConfig(k=2, steps=steps, warmup=warmup, qr="joint"),
               "top-64": LSConfig(k=2, steps=steps, warmup=warmup, top=64)}
    for preset in ("small", "paper"):
        spec, train = get_preset("stacked_lstm", preset)
        torch.manual_seed(0)
        model = build_model(spec, len(corpus.vocab))
        data = batchify(corpus.train, train.batch_size)
        n_epoch = (data.size(0) - 1 + train.bptt - 1) // train.bptt
        ls = {name: _ls_time(model, corpus, cfg) for name, cfg in configs.items()}
        if preset == "small":
            sec, n = _train_batches(model, data, train.bptt, train.lr, train.clip, 10 if QUICK else None)
            epoch, how = sec / n * n_epoch, f"timed, {n} batches"
        else:
            _train_batches(model, data, train.bptt, train.lr, train.clip, 1)  # warm-up batch
            sec, n = _train_batches(model, data, train.bptt, train.lr, train.clip, 1 if QUICK else 5)
            epoch, how = sec / n * n_epoch, f"extrapolated from {n} batches ({sec / n:.2f} s each) to {n_epoch}"
        print(f"  {preset}: N={model.state_size} epoch {epoch:.1f} s ({how})")
        for name, sec in ls.items():
            print(f"    LS {name}: {sec:.2f} s = {100 * sec / epoch:.3f} % of the epoch")


def _n1500_model(vocab: int) -> StackedLSTM:
    torch.manual_seed(0)
    model = StackedLSTM(vocab, 1500, (1500,))
    with torch.no_grad():  # trained-like recurrent scale: LSTM default init is U(-1/sqrt(H), 1/sqrt(H))
        model.rnns[0].weight_hh_l0.mul_(3.0)
    return model.eval()


def bench_bc(corpus, parts: str) -> None:
    model = _n1500_model(len(corpus.vocab))
    tokens = validation_tokens(corpus, 2, 45)
    cfg = LSConfig(k=2, steps=2 if QUICK else 35, warmup=0)
    t0 = time.perf_counter()
    engine = lyapunov_spectrum(model, tokens, cfg)
    t_engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = reference_spectrum(model, tokens, cfg)
    t_naive = time.perf_counter() - t0
    if "b" in parts:
        print("(b) full spectrum, N=1500, K=2, T=35, float32")
        diff = np.abs(engine - naive)
        print(f"  straightforward {t_naive:.1f} s; engine {t_engine:.1f} s; speed-up {t_naive / t_engine:.2f}x")
        print(f"  max |Δλ| = {diff.max():.2e} at index {int(diff.argmax())} (λ = {engine[diff.argmax()]:.3f}); "
              f"over the leading 1490: {diff[:1490].max():.2e}; exponents within 1e-5: {(diff <= 1e-5).mean():.1%} "
              f"(λ_1 {engine[0]:.4f}, mean {engine.mean():.4f}, λ_N {engine[-1]:.4f})")
        # float32 roundoff dominates the most contracting directions of both programs; in float64
        # the two compute the same exponents (the equality half of target (b)).
        cfg64 = LSConfig(k=2, steps=cfg.steps, warmup=0, dtype="float64")
        diff64 = np.abs(lyapunov_spectrum(model, tokens, cfg64) - reference_spectrum(model, tokens, cfg64))
        print(f"  float64, both programs: max |Δλ| = {diff64.max():.2e}; within 1e-5: {(diff64 <= 1e-5).mean():.1%}")
    if "c" in parts:
        for warmup in (0, 10, 30):
            cfg_top = LSConfig(k=2, steps=cfg.steps, warmup=warmup, top=64)
            t0 = time.perf_counter()
            top = lyapunov_spectrum(model, validation_tokens(corpus, 2, cfg_top.total_steps), cfg_top)
            t_top = time.perf_counter() - t0
            print(f"(c) top-64, warm-up {warmup}: {t_top:.2f} s; {t_naive / t_top:.1f}x faster than the "
                  f"straightforward full spectrum; max |Δλ| vs full (first 64) {np.abs(top - engine[:64]).max():.3f}")


# --------------------------------------------------------------------------------------------- (c) ranking
VOCAB = 2000


def _pool(corpus, n_candidates: int = 12):
    torch.set_num_threads(1)
    data = batchify(corpus.train[:200_000].clamp(max=VOCAB - 1), 20)
    torch.manual_seed(0)
    dense = build_model(get_preset("stacked_lstm", "tiny")[0], VOCAB)
    _train_batches(dense, data, 35, 20.0, 0.25, 20 if QUICK else 300)
    rng = np.random.default_rng(0)
    pool = {}
    for c in range(n_candidates):
        model = copy.deepcopy(dense)
        fraction, magnitude = float(rng.uniform(0.2, 0.9)), bool(c % 2)
        masks = []
        with torch.no_grad():
            for lstm in model.rnns:
                for w in (lstm.weight_hh_l0, lstm.weight_ih_l0):
                    score = w.abs() if magnitude else torch.rand(w.shape)
                    keep = (score > score.flatten().kthvalue(int(fraction * w.numel())).values).to(w.dtype)
                    w.mul_(keep)
                    masks.append((w, keep))
        opt = torch.optim.SGD(model.parameters(), lr=20.0)
        model.train()
        state = model.init_state(20)
        for i in range(3 if QUICK else 40):  # short masked training
            x, y = data[i * 35:(i + 1) * 35], data[i * 35 + 1:(i + 1) * 35 + 1]
            state = model.detach_state(state)
            logp, state = model(x, state)
            loss = nn.functional.nll_loss(logp.reshape(-1, VOCAB), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
            with torch.no_grad():
                for w, keep in masks:
                    w.mul_(keep)
        pool[f"c{c}:{'mag' if magnitude else 'rand'}{fraction:.2f}"] = model.eval()
    return dense.eval(), pool


def _kendall(a: list, b: list) -> float:
    from scipy.stats import kendalltau

    pos = {cid: i for i, cid in enumerate(b)}
    return float(kendalltau(range(len(a)), [pos[c] for c in a]).statistic)


def bench_ranking(corpus, parts: str) -> None:
    threads = torch.get_num_threads()
    dense, pool = _pool(corpus)
    valid = corpus.valid.clamp(max=VOCAB - 1)
    configs = {"full": LSConfig(k=2, steps=35, warmup=10), "top": LSConfig(k=2, steps=35, warmup=10, top=32),
               "joint": LSConfig(k=2, steps=35, warmup=10, qr="joint"),
               "joint K=10": LSConfig(k=10, steps=35, warmup=10, qr="joint")}
    if "d" not in parts:
        del configs["joint"], configs["joint K=10"]
    spectra = {name: {cid: lyapunov_spectrum(m, validation_tokens(valid, cfg.k, 75), cfg)
                      for cid, m in [("ref", dense)] + list(pool.items())}
               for name, cfg in configs.items()}
    torch.set_num_threads(threads)
    ranks = {}
    for emb in ("pca", "raw"):
        for name, s in spectra.items():
            d, _ = ls_distances([s["ref"]], {cid: [v] for cid, v in s.items() if cid != "ref"}, embedding=emb)
            ranks[emb, name] = rank_candidates(d)
    if "c" in parts:
        print(f"(c) ranking of {len(pool)} PTB-trained tiny candidates (N=128) by LS distance: top-32 vs full")
        for emb in ("pca", "raw"):
            print(f"  {emb}-l2: Kendall tau = {_kendall(ranks[emb, 'full'], ranks[emb, 'top']):.3f}; "
                  f"full: {ranks[emb, 'full']}")
    if "d" in parts:
        print(f"(d) the same {len(pool) + 1} models, full spectra, K=2, T=35, warm-up 10: layered vs joint")
        ids = list(spectra["full"])
        lj = [np.abs(spectra["full"][c] - spectra["joint"][c]) for c in ids]
        jk = [np.abs(spectra["joint"][c] - spectra["joint K=10"][c]) for c in ids]
        pairs = [np.abs(spectra["joint K=10"][a] - spectra["joint K=10"][b]).mean()
                 for i, a in enumerate(ids) for b in ids[i + 1:]]
        print(f"  mean |Δλ| per model, layered vs joint: median {np.median([x.mean() for x in lj]):.4f} "
              f"(max {max(x.mean() for x in lj):.4f}); joint K=2 vs K=10: median "
              f"{np.median([x.mean() for x in jk]):.4f} (max {max(x.mean() for x in jk):.4f}); "
              f"between two models (K=10): median {np.median(pairs):.4f} (min {min(pairs):.4f})")
        print(f"  max |Δλ| per model, layered vs joint: median {np.median([x.max() for x in lj]):.4f}; "
              f"joint K=2 vs K=10: median {np.median([x.max() for x in jk]):.4f}")
        for emb in ("pca", "raw"):
            print(f"  {emb}-l2 ranking: Kendall tau layered vs joint "
                  f"{_kendall(ranks[emb, 'joint'], ranks[emb, 'full']):.3f}; "
                  f"joint K=2 vs joint K=10 {_kendall(ranks[emb, 'joint K=10'], ranks[emb, 'joint']):.3f}; "
                  f"layered vs joint K=10 {_kendall(ranks[emb, 'joint K=10'], ranks[emb, 'full']):.3f}")


def _two_layer_model(vocab: int, width: int, pruned: bool) -> StackedLSTM:
    torch.manual_seed(0)
    model = StackedLSTM(vocab, width, (width, width))
    with torch.no_grad():
        for lstm in model.rnns:
            lstm.weight_hh_l0.mul_(3.0)  # trained-like recurrent scale, as in (b)
            if pruned:
                for w in (lstm.weight_hh_l0, lstm.weight_ih_l0):
                    w[w.abs() <= w.abs().flatten().kthvalue(int(0.8 * w.numel())).values] = 0
    return model.eval()


def bench_fast(corpus, device: str, repeat: int, width: int = 650) -> None:
    steps, warmup = (3, 1) if QUICK else (35, 10)
    print(f"(e) fast (qr='cholesky') vs qr='layered', 2x{width} stacked LSTM, K=2, T={steps} + {warmup} warm-up, "
          f"float32, {device}; times: best of {repeat}, interleaved")
    tokens = validation_tokens(corpus, 2, steps + warmup)
    for pruned in (False, True):
        model = _two_layer_model(len(corpus.vocab), width, pruned).to(device)
        for state in ("h", "hc"):
            cfgs = {qr: LSConfig(k=2, steps=steps, warmup=warmup, state=state, qr=qr) for qr in ("layered", "cholesky")}
            times = {qr: [] for qr in cfgs}
            cpu = {qr: [] for qr in cfgs}
            spectra, stats = {}, {}
            for _ in range(repeat):
                for qr, cfg in cfgs.items():
                    stats[qr] = {}
                    t0, c0 = time.perf_counter(), time.process_time()
                    spectra[qr] = lyapunov_spectrum(model, tokens, cfg, stats=stats[qr])
                    times[qr].append(time.perf_counter() - t0)
                    cpu[qr].append(time.process_time() - c0)
            ref = lyapunov_spectrum(model, tokens, LSConfig(k=2, steps=steps, warmup=warmup, state=state,
                                                            qr="layered", dtype="float64"))
            lay, fast = spectra["layered"], spectra["cholesky"]
            t_lay, t_fast = min(times["layered"]), min(times["cholesky"])
            c_lay, c_fast = min(cpu["layered"]), min(cpu["cholesky"])
            st = stats["cholesky"]
            print(f"  {'pruned 80%' if pruned else 'dense'} {state}: N={lay.size}; layered {t_lay:.2f} s, "
                  f"cholesky {t_fast:.2f} s: {t_lay / t_fast:.2f}x (process CPU time {c_lay:.2f} s vs "
                  f"{c_fast:.2f} s: {c_lay / c_fast:.2f}x); max |Δλ| cholesky vs layered "
                  f"{np.abs(fast - lay).max():.2e}; vs float64 layered: cholesky {np.abs(fast - ref).max():.2e}, "
                  f"layered {np.abs(lay - ref).max():.2e} (leading 10: {np.abs(fast[:10] - ref[:10]).max():.1e}, "
                  f"{np.abs(lay[:10] - ref[:10]).max():.1e}); λ_1 {ref[0]:.3f}, λ_N {ref[-1]:.3f}; "
                  f"Cholesky QRs {st['qr_steps']}, with a float64 Gram matrix {st['float64_gram']}, "
                  f"Householder fallbacks {st['householder_fallbacks']}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    p.add_argument("--device", default="cpu", help="device of part (e) (default cpu)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs of each spectrum in (e) (default 2)")
    p.add_argument("--width", type=int, default=650, help="layer width of (e)'s 2-layer LSTM (paper: 1500)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="smoke test with tiny sizes (numbers meaningless)")
    args = p.parse_args()
    global QUICK
    QUICK = args.quick
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.only.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    corpus = load_corpus("ptb")
    if "b" in parts or "c" in parts:
        bench_bc(corpus, "".join(parts))
    if "c" in parts or "d" in parts:
        bench_ranking(corpus, "".join(parts))
    if "e" in parts:
        bench_fast(corpus, args.device, args.repeat, args.width)
    if "a" in parts:
        bench_a(corpus)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
