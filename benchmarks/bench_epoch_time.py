"""Cost of one epoch and one Lyapunov spectrum per model and preset: measured CPU seconds, counted FLOPs.

What ``lsh_tune/search/run/cost.py`` (``EPOCH_COSTS``) holds and ``docs/cluster.md`` tabulates:

* ``train_s_per_token`` / ``eval_s_per_token``: CPU seconds per training token (one SGD step on the
  preset's batch size and BPTT: forward, backward, clipping, update, as ``Trainer`` does) and per
  validation token (forward only), the fastest of ``--repeats`` batches after a warm-up one (the
  fastest, because other processes on a shared machine only ever slow a batch down);
* ``ls_s``: one full spectrum with the search's default LS settings (K = 2, 10 + 35 steps, layered);
* ``train_flops_per_token`` / ``eval_flops_per_token``: ``torch.utils.flop_counter`` over a training
  step (forward + backward) and a forward pass, plus the fused ``nn.LSTM`` layers it does not see
  (2 FLOPs per weight and token forward, twice that backward); ``ls_flops``: the counted products plus the QR
  steps, which the counter skips (geqrf (4/3)·n³ + ormqr 2·n³ per block of n per step and sequence).

Usage::

    PYTHONPATH=. python benchmarks/bench_epoch_time.py --threads 2 --json   # every model and preset
    PYTHONPATH=. python benchmarks/bench_epoch_time.py --model rhn --preset paper
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lsh_tune.data import load_corpus
from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum, validation_tokens
from lsh_tune.models import MODELS, PRESETS, build_model, get_preset

CORPUS = {"stacked_lstm": "ptb", "rhn": "ptb", "awd_lstm_mos": "wikitext-2"}


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _lstm_flops(model) -> float:
    """Forward FLOPs per token of the fused ``nn.LSTM`` modules, which the counter skips: 2 per weight."""
    return float(sum(2 * (m.weight_ih_l0.numel() + m.weight_hh_l0.numel())
                     for m in model.modules() if isinstance(m, torch.nn.LSTM)))


def _step_flops(model, vocab: int) -> tuple[float, float]:
    """(training FLOPs, forward FLOPs) per token, on a (5, 2) batch (backward = 2 × forward for the
    fused LSTM layers, as for a matrix product)."""
    x = torch.randint(0, vocab, (5, 2))
    model.train()

    def train():
        out, _ = model(x, model.init_state(2))
        out.sum().backward()

    def forward():
        with torch.no_grad():
            model.eval()
            model(x, model.init_state(2))
            model.train()

    lstm = _lstm_flops(model)
    return _flops(train) / x.numel() + 3 * lstm, _flops(forward) / x.numel() + lstm


def _ls_flops(model, tokens, cfg: LSConfig) -> float:
    """Counted products of one spectrum plus the uncounted QR work (see module docstring)."""
    counted = _flops(lambda: lyapunov_spectrum(model, tokens, cfg))
    blocks = [int(h) for h in model.hidden_sizes] if cfg.qr == "layered" else [int(sum(model.hidden_sizes))]
    qr = cfg.k * cfg.total_steps * sum((4 / 3 + 2) * n ** 3 for n in blocks)
    return float(counted + qr)


def _fastest(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls after one warm-up call (other processes on a shared
    machine only ever slow a call down)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(model_name: str, preset: str, repeats: int) -> dict:
    model_spec, train_spec = get_preset(model_name, preset)
    corpus = load_corpus(CORPUS[model_name])
    torch.manual_seed(0)
    model = build_model(model_spec, len(corpus.vocab))
    train_flops, eval_flops = _step_flops(model, len(corpus.vocab))
    B, T, V = train_spec.batch_size, train_spec.bptt, len(corpus.vocab)
    x, y = corpus.train[:B * T].view(T, B), corpus.train[1:B * T + 1].view(T, B)
    opt = torch.optim.SGD(model.parameters(), lr=train_spec.lr, weight_decay=train_spec.weight_decay)

    def train_step():  # what Trainer.train_epoch does per batch
        model.train()
        opt.zero_grad(set_to_none=True)
        log_probs, _ = model(x, model.init_state(B))
        torch.nn.functional.nll_loss(log_probs.reshape(-1, V), y.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_spec.clip)
        opt.step()

    Be = train_spec.eval_batch_size
    xe = corpus.valid[:Be * T].view(T, Be)

    @torch.no_grad()
    def eval_step():
        model.eval()
        model(xe, model.init_state(Be))

    ls_cfg = LSConfig()
    ls_tokens = validation_tokens(corpus, k=ls_cfg.k, length=ls_cfg.total_steps)
    ls_s = _fastest(lambda: lyapunov_spectrum(model, ls_tokens, ls_cfg), max(1, repeats // 3))
    return {"model": model_name, "preset": preset, "corpus": CORPUS[model_name],
            "train_tokens": int(corpus.train.numel()), "valid_tokens": int(corpus.valid.numel()),
            "train_s_per_token": _fastest(train_step, repeats) / (B * T),
            "eval_s_per_token": _fastest(eval_step, repeats) / (Be * T), "ls_s": ls_s,
            "train_flops_per_token": train_flops, "eval_flops_per_token": eval_flops,
            "ls_flops": _ls_flops(model, ls_tokens, ls_cfg), "epochs": train_spec.epochs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, action="append", help="default: every model")
    p.add_argument("--preset", choices=PRESETS, action="append", help="default: every preset")
    p.add_argument("--repeats", type=int, default=4, help="timed batches (the fastest counts; LS: a third)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for model_name in args.model or MODELS:
        for preset in args.preset or PRESETS:
            row = measure(model_name, preset, args.repeats)
            row.update(threads=args.threads, machine=platform.machine(), torch=torch.__version__)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                epoch = row["train_s_per_token"] * row["train_tokens"] + row["eval_s_per_token"] * row["valid_tokens"]
                print(f"{model_name:13s} {preset:6s} epoch {epoch / 60:8.1f} min  LS {row['ls_s']:6.1f} s  "
                      f"{row['train_flops_per_token'] / 1e6:8.1f} MFLOP/token", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
