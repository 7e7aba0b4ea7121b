"""The evidence sections of BENCHMARKS.md from one training table (issue 12), as Markdown.

    OMP_NUM_THREADS=1 python benchmarks/evidence.py tables/bench --seeds 10 > /tmp/evidence.md

Sections: calibration (dense reference vs unigram, spread of the configurations, the seed noise
floor), Table 2 (LS vs loss under every refill generator, three budgets, plus Ray Tune's ASHA and
HyperBand on validation loss), Table 4 (E = 1…4), Table B2 (embedding × distance, the state
convention, per-epoch vs per-boundary history, only the top-k leading exponents), Fig. 3-right
(simulated time to reach each target perplexity: LSH vs sequential full training vs ASHA) and the
predictive power of each epoch's signals. Every replay is the code ``lsh-tune replay`` runs (:func:`lsh_tune.cli.replay.replay_many`);
each result is cached in ``--cache`` (default ``TABLE/evidence.json``) as soon as it is computed,
so an interrupted run continues where it stopped and a finished one prints again in seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from lsh_tune.cli.replay import replay_many
from lsh_tune.lyapunov.distance import FLOOR_PERCENTILE, NEG_INF_FLOOR
from lsh_tune.search import HPO_METHODS
from lsh_tune.search.signals import RANKING_METRICS
from lsh_tune.space import DEFAULT_DEATH_RATE_GRID
from lsh_tune.storage import atomic_write_json
from lsh_tune.table import Table
from lsh_tune.table.analysis import predictive_power

#: The −inf rule the replays rank with (part of every cache key).
NEG_INF_RULE = f"{NEG_INF_FLOOR}@p{FLOOR_PERCENTILE:g}"
REPLAY_DEFAULTS = dict(hpo="grid", metric="ls", pool=12, rounds_every=1, final_k=2, max_rounds=None, seeds=10, gpus=1,
                       ls_state="h", ls_embedding="pca", ls_distance="l2", ls_history="epoch", ls_top=None, reduction_factor=2.0,
                       targets=None)


class Evidence:
    """Replays of one table, cached by their options in a JSON file."""

    def __init__(self, table: Table, cache: Path, seeds: int) -> None:
        self.table, self.cache, self.seeds = table, cache, seeds
        self.done = json.loads(cache.read_text()) if cache.exists() else {}

    def replay(self, **options) -> dict:
        """The summary of ``lsh-tune replay`` with ``options`` (over ``seeds`` replay seeds)."""
        return self._result(options)["summary"]

    def chosen(self, **options) -> list[str]:
        """The configuration each replay seed chose, with ``options``."""
        return self._result(options)["chosen"]

    def _result(self, options: dict) -> dict:
        args = {**REPLAY_DEFAULTS, "seeds": self.seeds, **options}
        if args["metric"] in RANKING_METRICS and args["max_rounds"] is None:  # what the table's epochs allow
            args["max_rounds"] = (self.table.settings.epochs - 1) // args["rounds_every"]
        key = json.dumps({**args, "table_seeds": list(self.table.settings.seeds), "configs": self.table.keys,
                          "neg_inf_rule": NEG_INF_RULE}, sort_keys=True)  # a grown table, other seeds or
        # another -inf rule are other replays (a cache written before the floor rule is not reused)
        if key not in self.done:
            out = replay_many(self.table, argparse.Namespace(**args))
            self.done[key] = {"summary": out["summary"],
                              "chosen": [r["chosen"]["key"] for r in out["replays"]]}
            atomic_write_json(self.done, self.cache, indent=None)
        return self.done[key]


def _ci(v: dict, digits: int = 1) -> str:
    return f"{v['mean']:.{digits}f} ± {v['ci95']:.{digits}f}"


def _cell(s: dict) -> str:
    return f"{_ci(s['test_ppl'])} (rank {s['rank']['mean']:.1f}, best {s['best_selected']:.0%})"


def calibration(table: Table) -> list[str]:
    from lsh_tune.data import unigram_perplexities
    from lsh_tune.table import load_table_corpus

    st = table.settings
    unigram = unigram_perplexities(load_table_corpus(st))
    lines = ["### Calibration", "",
             f"Unigram (add-one, the table's slices): {unigram['valid']:.1f} validation, {unigram['test']:.1f} test.", ""]
    lines += ["| run | seed | val ppl | test ppl | test / unigram |", "|---|---|---|---|---|"]
    for s in st.seeds:
        f = table.run("reference", s)["final"]
        lines.append(f"| dense reference | {s} | {f['val_ppl']:.1f} | {f['test_ppl']:.1f} | "
                     f"{f['test_ppl'] / unigram['test']:.2f} |")
    means = {k: table.final(k) for k in table.keys}
    best, worst = min(means, key=means.get), max(means, key=means.get)
    spreads = []
    for k in table.keys:
        v = [table.run(k, s)["final"]["test_ppl"] for s in st.seeds]
        spreads.append((max(v) - min(v)) / statistics.mean(v))
    twins = []
    for k in table.keys:
        c = table.config(k)
        if c.get("redistribution") == "nonzeros":
            other = {**c, "redistribution": "none"}
            key, exact = table.nearest(other)
            if exact:
                twins.append(abs(means[k] - means[key]) / statistics.mean([means[k], means[key]]))
    ep = [r["epoch_time_s"] for k in table.keys for s in st.seeds for r in table.run(k, s)["epochs"][1:]]
    ls = [r["ls_time_s"] for k in table.keys for s in st.seeds for r in table.run(k, s)["epochs"]]
    lines += ["", f"{len(table.keys)} configurations × {len(st.seeds)} seeds. Mean test perplexity over seeds: best "
              f"{means[best]:.1f} (`{best}`), worst {means[worst]:.1f} (`{worst}`): worst/best = "
              f"{means[worst] / means[best]:.2f}.",
              f"Seed noise floor (max − min over seeds, / mean, per configuration): median "
              f"{100 * statistics.median(spreads):.1f} %, max {100 * max(spreads):.1f} %. Twins that differ only in "
              f"redistribution `nonzeros` vs `none`: median gap {100 * statistics.median(twins):.1f} % "
              f"({len(twins)} pairs)." if twins else "",
              f"Epoch cost: {statistics.mean(ep):.1f} s training (mean of {len(ep)} candidate epochs), "
              f"{statistics.mean(ls):.2f} s LS of all {len(st.ls_states)} state conventions "
              f"({100 * statistics.mean(ls) / statistics.mean(ep):.1f} % of an epoch)."]
    return lines


def table2(ev: Evidence, pools: list[int]) -> list[str]:
    lines = ["### Table 2: LS vs loss (chosen test ppl mean ± 95 % CI over replay seeds; mean rank among "
             f"{len(ev.table.keys)}; share of seeds choosing the best; E = 1, at most "
             f"{ev.table.settings.epochs - 1} rounds)", "",
             "| generator / signal | " + " | ".join(f"pool {p}" for p in pools) + " |",
             "|---|" + "---|" * len(pools)]
    for hpo in HPO_METHODS:
        for metric in ("ls", "loss"):
            cells = [_cell(ev.replay(hpo=hpo, metric=metric, pool=p)) for p in pools]
            lines.append(f"| {hpo} / {metric} | " + " | ".join(cells) + " |")
    for metric, name in (("asha", "Ray Tune ASHA / val loss"), ("hyperband", "Ray Tune HyperBand / val loss"),
                         ("sequential", "sequential full training")):
        lines.append(f"| {name} | " + " | ".join(_cell(ev.replay(metric=metric, pool=p)) for p in pools) + " |")
    return lines


def verdict(ev: Evidence, pools: list[int]) -> list[str]:
    """The counts the conclusions quote: LS vs loss over Table 2's generator × budget pairs, and
    where each generator's chosen configurations lie (the grid's death rate or off it)."""
    pairs = [(hpo, p, ev.replay(hpo=hpo, metric="ls", pool=p), ev.replay(hpo=hpo, metric="loss", pool=p))
             for hpo in HPO_METHODS for p in pools]
    n = len(pairs)
    ppl = [loss["test_ppl"]["mean"] - ls["test_ppl"]["mean"] for _, _, ls, loss in pairs]  # < 0: loss ahead
    rank = [loss["rank"]["mean"] - ls["rank"]["mean"] for _, _, ls, loss in pairs]  # > 0: LS ahead
    overlap = sum(abs(d) <= ls["test_ppl"]["ci95"] + loss["test_ppl"]["ci95"] for d, (_, _, ls, loss) in zip(ppl, pairs))
    best = [(ls["best_selected"], loss["best_selected"]) for _, _, ls, loss in pairs]
    lines = [f"### Verdict counts (Table 2: {n} generator × budget pairs)", "",
             f"* chosen run's test ppl: loss ahead in {sum(d < 0 for d in ppl)}, LS ahead in {sum(d > 0 for d in ppl)} "
             f"(largest gap {max(abs(d) for d in ppl):.1f}); 95 % intervals overlap in {overlap} of {n};",
             f"* chosen configuration's mean rank: LS ahead in {sum(r > 0 for r in rank)}, loss ahead in "
             f"{sum(r < 0 for r in rank)}, mean difference {statistics.mean(rank):+.2f} ranks (+ = LS better);",
             f"* best configuration selected: LS more often in {sum(a > b for a, b in best)}, loss in "
             f"{sum(a < b for a, b in best)}, equal in {sum(a == b for a, b in best)};"]
    rates = {k: ev.table.config(k)["death_rate"] for k in ev.table.keys}
    grid_rate = DEFAULT_DEATH_RATE_GRID  # what a grid replay tabulates
    off = sum(abs(r - grid_rate) > 1e-9 for r in rates.values())
    lines.append(f"* chosen off the grid's death rate {grid_rate} ({off} of the {len(rates)} tabulated configurations "
                 "are), per generator over all budgets and both signals:")
    for hpo in HPO_METHODS:
        keys = [k for p in pools for m in ("ls", "loss") for k in ev.chosen(hpo=hpo, metric=m, pool=p)]
        subs = sum(ev.replay(hpo=hpo, metric=m, pool=p)["substituted"] for p in pools for m in ("ls", "loss"))
        lines.append(f"  {hpo}: {sum(abs(rates[k] - grid_rate) > 1e-9 for k in keys)} of {len(keys)} choices off it; "
                     f"{subs / len(keys):.1f} nearest-configuration answers per replay")
    return lines


def table4(ev: Evidence, pool: int) -> list[str]:
    epochs = ev.table.settings.epochs
    lines = [f"### Table 4: rounds every E epochs (grid, pool {pool}; rounds capped at ⌊(epochs − 1)/E⌋ = what "
             f"{epochs} epochs allow)", "",
             "| E | rounds | signal | chosen test ppl | best selected | mean rank | simulated time (1 GPU) |",
             "|---|---|---|---|---|---|---|"]
    for E in range(1, 5):
        rounds = min(math.ceil(math.log2(pool / 2)), (epochs - 1) // E)
        if rounds < 1:
            continue
        for metric in ("ls", "loss"):
            s = ev.replay(metric=metric, pool=pool, rounds_every=E, max_rounds=rounds)
            lines.append(f"| {E} | {rounds} | {metric} | {_ci(s['test_ppl'])} | {s['best_selected']:.0%} | "
                         f"{s['rank']['mean']:.1f} | {s['sim_time_s']['mean']:.0f} s |")
    return lines


def table_b2(ev: Evidence, pool: int, tops: list[int], every: int = 1) -> list[str]:
    rounds = (ev.table.settings.epochs - 1) // every
    title = "" if every == 1 else f", E = {every} ({rounds} round{'s' if rounds > 1 else ''})"
    lines = [f"### Table B2{title}: LS settings (LSH-TPE, pool {pool}; top = leading exponents used)", "",
             "| state | embedding | distance | history | top | chosen test ppl | best selected | mean rank |",
             "|---|---|---|---|---|---|---|---|"]
    st = ev.table.settings
    rows = [(state, emb, dist, "epoch") for state in st.ls_states for emb in st.embeddings for dist in st.metrics]
    rows = [(*row, None) for row in rows] + [(state, "pca", "l2", "boundary", None) for state in st.ls_states]
    rows += [(state, "pca", "l2", "epoch", k) for state in st.ls_states for k in tops]
    for state, emb, dist, hist, top in rows:
        s = ev.replay(hpo="tpe", pool=pool, ls_state=state, ls_embedding=emb, ls_distance=dist, ls_history=hist,
                      ls_top=top, **({} if every == 1 else {"rounds_every": every}))
        lines.append(f"| {state} | {emb} | {dist} | {hist} | {'all' if top is None else top} | {_ci(s['test_ppl'])} | "
                     f"{s['best_selected']:.0%} | {s['rank']['mean']:.1f} |")
    s = ev.replay(hpo="tpe", pool=pool, metric="loss", **({} if every == 1 else {"rounds_every": every}))
    lines.append(f"| — | — | val loss | — | — | {_ci(s['test_ppl'])} | {s['best_selected']:.0%} | "
                 f"{s['rank']['mean']:.1f} |")
    return lines


def fig3(ev: Evidence, pool: int) -> list[str]:
    means = sorted(ev.table.final(k) for k in ev.table.keys)
    targets = [round(means[0] * f, 1) for f in (1.02, 1.05, 1.10, 1.20)]
    lines = [f"### Fig. 3-right: simulated time to reach a test perplexity (1 GPU; best tabulated mean "
             f"{means[0]:.1f})", "", "| search | " + " | ".join(f"≤ {t:g}" for t in targets) + " |",
             "|---|" + "---|" * len(targets)]
    for name, opts in ((f"LSH-TPE / ls, pool {pool}", dict(hpo="tpe", metric="ls", pool=pool)),
                       (f"TPE / loss, pool {pool}", dict(hpo="tpe", metric="loss", pool=pool)),
                       (f"Ray Tune ASHA / val loss, {pool} configs", dict(metric="asha", pool=pool)),
                       (f"sequential full training, all {len(ev.table.keys)}",
                        dict(metric="sequential", pool=len(ev.table.keys)))):
        s = ev.replay(targets=targets, **opts)
        cells = []
        for t in targets:
            v = s["time_to_target"][f"{t:g}"]
            cells.append("never" if v["time_s"] is None else
                         f"{v['reached']:.0%} of seeds, {v['time_s']['mean'] / 60:.0f} ± {v['time_s']['ci95'] / 60:.0f} min")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def predictive(table: Table, tops: list[int]) -> list[str]:
    rows = predictive_power(table, boot=1000, tops=tops)
    epochs = sorted({r["epoch"] for r in rows})
    lines = ["### Predictive power: Spearman ρ of each epoch's signal with the final test perplexity "
             f"(all {len(table.keys)} × {len(table.settings.seeds)} runs; bootstrap 95 % CI over configurations)", "",
             "| signal | " + " | ".join(f"epoch {e}" for e in epochs) + " |", "|---|" + "---|" * len(epochs)]
    for name in dict.fromkeys(r["signal"] for r in rows):
        cells = [f"{r['rho']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]" for e in epochs for r in rows
                 if r["signal"] == name and r["epoch"] == e]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table")
    p.add_argument("--seeds", type=int, default=10, help="replay seeds per cell")
    p.add_argument("--pools", default="8,12,16", help="Table 2's three budgets (initial pools)")
    p.add_argument("--cache", default=None, help="where each replay's result is kept (default TABLE/evidence.json)")
    p.add_argument("--sections", default="calibration,table2,verdict,table4,b2,b2e2,b2e3,fig3,predictive")
    p.add_argument("--table-seeds", default=None, help="only these training seeds of the table, e.g. 0")
    p.add_argument("--ls-tops", default="16,64", help="top-k rows (leading exponents only) of Table B2 and the "
                                                      "predictive power; '' for none")
    args = p.parse_args(argv)
    tops = [int(x) for x in args.ls_tops.split(",") if x]
    seeds = None if args.table_seeds is None else [int(x) for x in args.table_seeds.split(",")]
    table = Table(args.table, seeds=seeds)
    ev = Evidence(table, Path(args.cache or Path(args.table) / "evidence.json"), args.seeds)
    pools = [int(x) for x in args.pools.split(",")]
    mid = pools[len(pools) // 2]
    makers = {"calibration": lambda: calibration(table), "table2": lambda: table2(ev, pools),
              "verdict": lambda: verdict(ev, pools),
              "table4": lambda: table4(ev, max(pools)), "b2": lambda: table_b2(ev, mid, tops),
              "b2e2": lambda: table_b2(ev, mid, tops, every=2), "b2e3": lambda: table_b2(ev, mid, tops, every=3), "fig3": lambda: fig3(ev, mid),
              "predictive": lambda: predictive(table, tops)}
    for name in args.sections.split(","):
        print("\n".join(makers[name]()) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
