"""What the per-epoch state mirror costs a trial at a preset's size (issue 19 item 4: where slot time goes).

After every epoch a search trial writes its full training state (weights, masks, optimizer, SNT-ASGD
average, RNG; :func:`lsh_tune.search.candidate.save_state`) to ``<experiment>/candidates/<cid>/``
before it reports the epoch, so an interrupted search loses no finished epoch. This times that write
for a sparse candidate of ``--model``/``--preset`` on this machine, with and without the averaged
copy that NT-ASGD adds once it triggers, into ``--dir`` (default: a temporary directory on the local
disk; the write is all-or-nothing and fsynced, as in a search):

    python benchmarks/bench_state_save.py --model stacked_lstm --preset paper --repeat 3

Prints one JSON line per case (no average; the average with int32 counters, what lsh_tune writes; the
same with int64 counters, what it wrote before 2026-12-05, interleaved with the int32 saves): the
state's size (MB), the median seconds of ``save_state`` and of a host copy of the state
(``Trainer.state_dict()`` and a copy of every tensor in it: what a background writer would have to
take before training goes on), and the write's share of an epoch of ``--epoch-s``
seconds (default: the H200 figure of issue 19 for the paper stacked LSTM, 17.7 s per PTB epoch).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import _build  # noqa: E402  (the same sparse candidate as the step benchmark)


def _host_copy(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_copy(v) for v in obj)
    return obj


def _case(args, trainer, store, meta: dict, counts: str | None, repeat: int | None = None) -> dict:
    """Median ``save_state`` and host-copy seconds of ``trainer``'s state (``counts``: the averager's
    counter dtype, ``None`` without an averager) over ``repeat`` (default ``args.repeat``) saves."""
    from lsh_tune.search.candidate import save_state
    from lsh_tune.search.layout import STATE_NAME, candidate_dir

    saves, copies = [], []
    for _ in range(args.repeat if repeat is None else repeat):
        t0 = time.perf_counter()
        _host_copy(trainer.state_dict())
        copies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        save_state(trainer, store, "c000", meta)
        saves.append(time.perf_counter() - t0)
    size = store.local_path(f"{candidate_dir('c000')}/{STATE_NAME}").stat().st_size
    save_s = statistics.median(saves)
    return {"model": args.model, "preset": args.preset, "averaged": counts is not None, "counts": counts,
            "state_mb": round(size / 2 ** 20, 1), "save_s": round(save_s, 3),
            "host_copy_s": round(statistics.median(copies), 3), "share_of_epoch": round(save_s / args.epoch_s, 4),
            "epoch_s": args.epoch_s, "repeat": len(saves)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stacked_lstm")
    p.add_argument("--preset", default="paper")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", default=None, help="where the states are written (default: a temporary directory)")
    p.add_argument("--epoch-s", type=float, default=17.7, help="the epoch the write is a share of (seconds)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from lsh_tune.data import load_corpus
    from lsh_tune.storage import Storage
    from lsh_tune.train.averaging import WeightAverager

    corpus = load_corpus("wikitext-2" if args.model == "awd_lstm_mos" else "ptb", max_tokens=20000)
    trainer = _build(args, "eager", corpus, torch.device("cpu"))
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        store = Storage(root)
        meta = {"ls_history": [[-1.0] * 8], "ls_epochs": [0], "last_report": None}
        print(json.dumps(_case(args, trainer, store, meta, None)), flush=True)
        trainer.averager = WeightAverager(trainer.model)  # what NT-ASGD adds once it triggers
        int32 = dict(trainer.averager.count)
        int64 = {k: v.to(torch.int64) for k, v in int32.items()}  # the counters before 2026-12-05
        runs = {"int32": [], "int64": []}
        for _ in range(args.repeat):  # the two counter types interleaved, one save each per round
            for name, counts in (("int32", int32), ("int64", int64)):
                trainer.averager.count = counts
                runs[name].append(_case(args, trainer, store, meta, name, repeat=1))
        for name, rows in runs.items():
            row = dict(rows[0], repeat=args.repeat)
            for key in ("save_s", "host_copy_s"):
                row[key] = round(statistics.median(r[key] for r in rows), 3)
            row["share_of_epoch"] = round(row["save_s"] / args.epoch_s, 4)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
