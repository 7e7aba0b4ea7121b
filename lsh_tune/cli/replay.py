"""``lsh-tune replay TABLE``: replay a search against a training table (seconds, no training).

``--metric ls|loss|hybrid`` (any registered ranking signal, :data:`lsh_tune.search.signals.SIGNALS`)
replays the search's own pool/ledger/generators (Ray-free); ``asha`` and
``hyperband`` drive Ray Tune's ``AsyncHyperBandScheduler`` / ``HyperBandScheduler`` on validation
loss (``--pool`` configurations sampled; not ``--hpo hyperband``, the LSH refill generator);
``sequential`` trains configurations
one after another to the end (Fig. 3-right's baseline). ``--seeds K`` replays seeds S…S+K−1
(``--seed S``, default 0) and reports the mean and 95 % confidence interval (Student t) of the chosen test perplexity, its rank
and the simulated wall time.
"""
from __future__ import annotations

import argparse
import math

from lsh_tune.errors import LSHUsageError
from lsh_tune.search.signals import RANKING_METRICS

__all__ = ["BASELINES", "METRICS", "OVERRIDES", "register", "replay_many", "replay_settings", "mean_ci"]

#: ``--metric`` values that are not a ranking signal of the search but another scheduler replayed.
BASELINES = ("asha", "hyperband", "sequential")
METRICS = (*RANKING_METRICS, *BASELINES)


#: How ``replay`` shows the :class:`~lsh_tune.table.ReplaySettings` fields whose meaning is wider on
#: the command line (``--metric`` also names the Ray Tune and sequential baselines).
OVERRIDES = {
    "metric": {"choices": METRICS,
               "help": f"what the search ranks by: {', '.join(RANKING_METRICS)} (the search replayed with that ranking "
                       "signal), asha or hyperband (Ray Tune's schedulers on validation loss), sequential (full "
                       "training, one configuration after another)"},
    "pool": {"help": "initial pool size (asha, hyperband, sequential: configurations tried)"},
    "max_rounds": {"help": "cap on halving rounds (default: what the table's epochs allow, (epochs - 1) // E)"},
    "seed": {"help": "search seed of the first replay; --seeds K replays SEED, SEED+1, ..., SEED+K-1"},
}


def register(sub) -> None:
    """Add ``replay``: one option per :class:`~lsh_tune.table.ReplaySettings` field (from its metadata,
    :data:`OVERRIDES` aside), plus the options that are not settings of one replay."""
    from lsh_tune.cli._dataclass_args import add_dataclass_args
    from lsh_tune.cli.common import comma_list
    from lsh_tune.table import ReplaySettings

    p = sub.add_parser("replay", help="replay a search against a training table (seconds)",
                       description=__doc__.splitlines()[0])
    p.add_argument("table", help="table directory (lsh-tune table build)")
    add_dataclass_args(p, ReplaySettings, overrides=OVERRIDES)
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="replays, from --seed on: their mean and 95%% interval are reported (default: 1)")
    p.add_argument("--reduction-factor", type=float, default=2.0,
                   help="asha/hyperband: reduction factor (default: 2.0)")
    p.add_argument("--targets", type=comma_list(float, "--targets", "400,450"), default=None,
                   help="test perplexities: simulated time to reach each (Fig. 3-right), e.g. 400,450")
    p.add_argument("--table-seeds", type=comma_list(int, "--table-seeds", "0"), default=None,
                   help="use only these training seeds of the table, e.g. 0 (while later seeds build)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def replay_settings(args: argparse.Namespace):
    """The validated :class:`~lsh_tune.table.ReplaySettings` of the options (``seed``: the first
    replay's; ``max_rounds`` as given), or ``None`` for ``--metric asha|hyperband|sequential``, whose
    replays take only ``--pool``, ``--seed`` and ``--gpus`` (the other settings' choices are still checked).

    ``args`` may lack settings (``benchmarks/evidence.py`` passes its own namespace): those keep their defaults.

    Raises:
        LSHUsageError: a value the settings refuse, an unknown ``--metric``, ``--seeds`` below 1.
    """
    import dataclasses

    from lsh_tune.cli._dataclass_args import dataclass_values
    from lsh_tune.errors import check_choice, check_int
    from lsh_tune.table import ReplaySettings

    check_choice("metric", args.metric, METRICS)
    if args.seeds < 1:
        raise LSHUsageError(f"--seeds {args.seeds}: must be at least 1")
    values = dataclass_values(ReplaySettings, args)
    if args.metric in RANKING_METRICS:
        return ReplaySettings(**values)
    for f in dataclasses.fields(ReplaySettings):
        if values.get(f.name) is not None and f.name != "metric" and "choices" in f.metadata:
            check_choice(f.name, values[f.name], f.metadata["choices"])
    check_int("seed", values.get("seed", 0), 0)
    return None


def mean_ci(values: list[float]) -> dict:
    """``{"mean", "ci95", "n"}``: the mean and the half-width of its 95 % Student-t interval (0 for n = 1)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": 0.0, "n": n}
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "ci95": float(t.ppf(0.975, n - 1) * sd / math.sqrt(n)), "n": n}


def _max_rounds(table, settings) -> int | None:
    """``--max-rounds``, else the most rounds of E epochs the table's epochs allow (a finalist must
    still train after selection ends); ``None`` when E exceeds that (the schedule check says why)."""
    if settings.max_rounds is not None:
        return settings.max_rounds
    rounds = (table.settings.epochs - 1) // settings.rounds_every
    return rounds if rounds >= 1 else None


def _one(table, args: argparse.Namespace, settings, seed: int) -> dict:
    """Replay ``seed``: ``settings`` (:func:`replay_settings`) at that seed, or the baseline ``--metric`` names."""
    from dataclasses import replace

    from lsh_tune.table import replay_search, replay_sequential

    if args.metric == "asha":
        from lsh_tune.table.tune_replay import replay_asha

        return replay_asha(table, budget=args.pool, seed=seed, gpus=args.gpus, reduction_factor=args.reduction_factor)
    if args.metric == "hyperband":
        from lsh_tune.table.tune_replay import replay_hyperband

        return replay_hyperband(table, budget=args.pool, seed=seed, gpus=args.gpus,
                                reduction_factor=args.reduction_factor)
    if args.metric == "sequential":
        return replay_sequential(table, budget=args.pool, seed=seed, gpus=args.gpus)
    return replay_search(table, replace(settings, seed=seed, max_rounds=_max_rounds(table, settings)))


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
    """Every seed's replay (``--seeds K`` from ``--seed`` on) and the summary over seeds.

    Raises:
        LSHUsageError: what :func:`replay_settings` refuses.
    """
    settings = replay_settings(args)
    first = getattr(args, "seed", 0)
    seeds = list(range(first, first + args.seeds))
    runs = [_one(table, args, settings, seed) for seed in seeds]
    summary = {name: mean_ci([float(r["chosen"][name]) for r in runs]) for name in ("test_ppl", "rank")}
    summary["sim_time_s"] = mean_ci([float(r["sim_time_s"]) for r in runs])
    summary["best_selected"] = sum(r["chosen"]["rank"] == 1 for r in runs) / len(runs)
    summary["substituted"] = sum(r.get("substituted", 0) for r in runs)
    if args.targets:
        summary["time_to_target"] = _time_to_target(runs, args.targets)
    return {"metric": args.metric, "hpo": args.hpo, "n_configs": len(table.keys), "summary": summary,
            "seeds": seeds, "replays": runs}


def run(args: argparse.Namespace) -> int:
    from lsh_tune.table import Table

    replay_settings(args)  # bad options before the table is read
    out = replay_many(Table(args.table, seeds=args.table_seeds), args)
    if args.json:
        from lsh_tune.cli import print_json
        print_json(out)
        return 0
    s = out["summary"]
    print(f"{args.metric} {args.hpo if args.metric in RANKING_METRICS else ''} pool {args.pool}, "
          f"{args.seeds} seed(s), {out['n_configs']} tabulated configurations")
    print(f"  test ppl {s['test_ppl']['mean']:.2f} ± {s['test_ppl']['ci95']:.2f}; rank {s['rank']['mean']:.1f} "
          f"± {s['rank']['ci95']:.1f}; best selected {s['best_selected']:.0%}; simulated time "
          f"{s['sim_time_s']['mean']:.0f} s ({args.gpus} GPU(s)); nearest-config answers {s['substituted']}")
    for target, v in s.get("time_to_target", {}).items():
        when = "never" if v["time_s"] is None else f"{v['time_s']['mean']:.0f} ± {v['time_s']['ci95']:.0f} s"
        print(f"  test ppl <= {target}: reached by {v['reached']:.0%} of seeds, {when}")
    for seed, r in zip(out["seeds"], out["replays"]):
        print(f"  seed {seed}: {r['chosen']['key']} test ppl {r['chosen']['test_ppl']:.2f} rank {r['chosen']['rank']}")
    return 0
