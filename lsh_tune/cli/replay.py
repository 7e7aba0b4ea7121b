"""``lsh-tune replay TABLE``: replay a search against a training table (seconds, no training).

``--metric ls|loss`` replays the search's own pool/ledger/generators (Ray-free); ``asha`` and
``hyperband`` drive Ray Tune's ``AsyncHyperBandScheduler`` / ``HyperBandScheduler`` on validation
loss (``--pool`` configurations sampled; not ``--hpo hyperband``, the LSH refill generator);
``sequential`` trains configurations
one after another to the end (Fig. 3-right's baseline). ``--seeds K`` replays seeds 0…K−1 and
reports the mean and 95 % confidence interval (Student t) of the chosen test perplexity, its rank
and the simulated wall time.
"""
from __future__ import annotations

import argparse
import math

from lsh_tune.errors import LSHUsageError

__all__ = ["register", "replay_many", "mean_ci"]

METRICS = ("ls", "loss", "asha", "hyperband", "sequential")


def register(sub) -> None:
    from lsh_tune.cli.common import comma_list
    from lsh_tune.lyapunov import CONVENTIONS
    from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS as LS_METRICS
    from lsh_tune.search._generators import HPO_METHODS
    from lsh_tune.table.replay import LS_HISTORIES

    p = sub.add_parser("replay", help="replay a search against a training table (seconds)",
                       description=__doc__.splitlines()[0])
    p.add_argument("table", help="table directory (lsh-tune table build)")
    p.add_argument("--hpo", choices=HPO_METHODS, default="grid", help="refill generator (ls/loss)")
    p.add_argument("--metric", choices=METRICS, default="ls", help="what the search ranks by")
    p.add_argument("--pool", type=int, default=24, help="initial pool (asha/sequential: configurations tried)")
    p.add_argument("--rounds-every", type=int, default=1, help="E: epochs per round")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="cap on halving rounds (default: what the table's epochs allow, (epochs - 1) // E)")
    p.add_argument("--final-k", type=int, default=2, help="stop halving at this pool size")
    p.add_argument("--seeds", type=int, default=1, help="replay seeds 0..K-1")
    p.add_argument("--gpus", type=int, default=1, help="parallel workers of the simulated wall time")
    p.add_argument("--ls-state", choices=CONVENTIONS, default="h")
    p.add_argument("--ls-embedding", choices=EMBEDDINGS, default="pca")
    p.add_argument("--ls-distance", choices=LS_METRICS, default="l2")
    p.add_argument("--ls-history", choices=LS_HISTORIES, default="epoch",
                   help="epoch (every epoch from 0, paper) or boundary (one spectrum per round)")
    p.add_argument("--ls-top", type=int, default=None, metavar="K",
                   help="rank by only the K leading exponents (as a search's --ls-top)")
    p.add_argument("--reduction-factor", type=float, default=2.0, help="asha/hyperband: reduction factor")
    p.add_argument("--targets", type=comma_list(float, "--targets", "400,450"), default=None,
                   help="test perplexities: simulated time to reach each (Fig. 3-right), e.g. 400,450")
    p.add_argument("--table-seeds", type=comma_list(int, "--table-seeds", "0"), default=None,
                   help="use only these training seeds of the table, e.g. 0 (while later seeds build)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def mean_ci(values: list[float]) -> dict:
    """``{"mean", "ci95", "n"}``: the mean and the half-width of its 95 % Student-t interval (0 for n = 1)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": 0.0, "n": n}
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "ci95": float(t.ppf(0.975, n - 1) * sd / math.sqrt(n)), "n": n}


def _max_rounds(table, args: argparse.Namespace) -> int | None:
    """``--max-rounds``, else the most rounds of E epochs the table's epochs allow (a finalist must
    still train after selection ends); ``None`` when E exceeds that (the schedule check says why)."""
    if args.max_rounds is not None:
        return args.max_rounds
    rounds = (table.settings.epochs - 1) // args.rounds_every
    return rounds if rounds >= 1 else None


def _one(table, args: argparse.Namespace, seed: int) -> dict:
    from lsh_tune.table import ReplaySettings, replay_search, replay_sequential

    if args.metric == "asha":
        from lsh_tune.table.tune_replay import replay_asha

        return replay_asha(table, budget=args.pool, seed=seed, gpus=args.gpus, reduction_factor=args.reduction_factor)
    if args.metric == "hyperband":
        from lsh_tune.table.tune_replay import replay_hyperband

        return replay_hyperband(table, budget=args.pool, seed=seed, gpus=args.gpus,
                                reduction_factor=args.reduction_factor)
    if args.metric == "sequential":
        return replay_sequential(table, budget=args.pool, seed=seed, gpus=args.gpus)
    s = ReplaySettings(hpo=args.hpo, metric=args.metric, pool=args.pool, rounds_every=args.rounds_every,
                       final_k=args.final_k, max_rounds=_max_rounds(table, args), seed=seed, gpus=args.gpus,
                       ls_state=args.ls_state, ls_embedding=args.ls_embedding, ls_distance=args.ls_distance,
                       ls_history=args.ls_history, ls_top=args.ls_top)
    return replay_search(table, s)


def _time_to_target(runs: list[dict], targets) -> dict:
    """Per target: the share of seeds whose answer reached it and the mean ± CI time of those."""
    from lsh_tune.table import time_to_targets

    out = {}
    for target in targets:
        times = [time_to_targets(r["trajectory"], [target])[float(target)] for r in runs]
        hit = [t for t in times if math.isfinite(t)]
        out[f"{target:g}"] = {"reached": len(hit) / len(runs), "time_s": mean_ci(hit) if hit else None}
    return out


def replay_many(table, args: argparse.Namespace) -> dict:
    """Every seed's replay and the summary over seeds."""
    if args.seeds < 1:
        raise LSHUsageError(f"--seeds {args.seeds}: must be at least 1")
    runs = [_one(table, args, seed) for seed in range(args.seeds)]
    summary = {name: mean_ci([float(r["chosen"][name]) for r in runs]) for name in ("test_ppl", "rank")}
    summary["sim_time_s"] = mean_ci([float(r["sim_time_s"]) for r in runs])
    summary["best_selected"] = sum(r["chosen"]["rank"] == 1 for r in runs) / len(runs)
    summary["substituted"] = sum(r.get("substituted", 0) for r in runs)
    if args.targets:
        summary["time_to_target"] = _time_to_target(runs, args.targets)
    return {"metric": args.metric, "hpo": args.hpo, "n_configs": len(table.keys), "summary": summary,
            "replays": runs}


def run(args: argparse.Namespace) -> int:
    from lsh_tune.table import Table

    out = replay_many(Table(args.table, seeds=args.table_seeds), args)
    if args.json:
        from lsh_tune.cli import print_json
        print_json(out)
        return 0
    s = out["summary"]
    print(f"{args.metric} {args.hpo if args.metric in ('ls', 'loss') else ''} pool {args.pool}, "
          f"{args.seeds} seed(s), {out['n_configs']} tabulated configurations")
    print(f"  test ppl {s['test_ppl']['mean']:.2f} ± {s['test_ppl']['ci95']:.2f}; rank {s['rank']['mean']:.1f} "
          f"± {s['rank']['ci95']:.1f}; best selected {s['best_selected']:.0%}; simulated time "
          f"{s['sim_time_s']['mean']:.0f} s ({args.gpus} GPU(s)); nearest-config answers {s['substituted']}")
    for target, v in s.get("time_to_target", {}).items():
        when = "never" if v["time_s"] is None else f"{v['time_s']['mean']:.0f} ± {v['time_s']['ci95']:.0f} s"
        print(f"  test ppl <= {target}: reached by {v['reached']:.0%} of seeds, {when}")
    for seed, r in enumerate(out["replays"]):
        print(f"  seed {seed}: {r['chosen']['key']} test ppl {r['chosen']['test_ppl']:.2f} rank {r['chosen']['rank']}")
    return 0
