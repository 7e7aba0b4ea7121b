"""Which ranking signal should be the default (issue 20 item 5): every candidate default replayed on one table.

    OMP_NUM_THREADS=1 python benchmarks/ranking_defaults.py tables/bench --seeds 10 > /tmp/defaults.md

Each candidate default (the search's default, the LS distance alone that was the default before,
the authors' variant, the paper's per-candidate fit, the other LS settings that rank well in BENCHMARKS.md, the loss and the hybrids) is replayed with
``lsh-tune replay``'s own code (:func:`lsh_tune.cli.replay.replay_many`) under every
``--hpo`` × ``--pool`` × ``E`` cell, ``--seeds`` replay seeds each. Per cell it records the chosen
configuration's mean rank among the table's configurations (1 = best final test perplexity, the
table's mean over its seeds) and its regret (that mean test perplexity − the best configuration's).
Printed: mean rank and regret per candidate and E (averaged over hpo × pool), the number of cells
where each is no worse than ``--metric loss`` on rank, and the candidate with the lowest mean rank
over all cells (ties: lower regret). Every replay is cached in ``--cache`` (default
``TABLE/ranking_defaults.json``) as soon as it is computed: an interrupted run continues, a finished
one prints again in seconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from lsh_tune.cli.replay import replay_many
from lsh_tune.lyapunov.distance import FLOOR_PERCENTILE, NEG_INF_FLOOR
from lsh_tune.storage import atomic_write_json
from lsh_tune.table import Table

#: name -> replay options of each candidate default.
CANDIDATES = {
    "ls h/pca/l2 pool fit (the default until 2026-12-05)": dict(metric="ls"),
    "ls h/pca/l2 authors (per-candidate fit, same-epoch reference)": dict(metric="ls", ls_fit="authors"),
    "ls h/pca/l2 candidate-fit (Appendix B per candidate)": dict(metric="ls", ls_fit="candidate"),
    "ls h top-16": dict(metric="ls", ls_top=16),
    "ls hc/raw/cosine": dict(metric="ls", ls_state="hc", ls_embedding="raw", ls_distance="cosine"),
    "loss": dict(metric="loss"),
    "hybrid h/pca/l2 (the default since 2026-12-05)": dict(metric="hybrid"),
    "hybrid hc/raw/cosine": dict(metric="hybrid", ls_state="hc", ls_embedding="raw", ls_distance="cosine"),
    "hybrid h/pca/l2 authors (same-epoch reference)": dict(metric="hybrid", ls_fit="authors"),
}
BASE = dict(hpo="grid", metric="ls", pool=12, rounds_every=1, final_k=2, max_rounds=None, seed=0, seeds=10, gpus=1,
            ls_state="h", ls_embedding="pca", ls_distance="l2", ls_fit="pool", ls_history="epoch", ls_top=None,
            grid_death_rate=None, reduction_factor=2.0, targets=None, table_seeds=None)
NEG_INF_RULE = f"{NEG_INF_FLOOR}@p{FLOOR_PERCENTILE:g}"


def _cells(hpos, pools, es):
    return [(h, p, e) for e in es for h in hpos for p in pools]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--hpo", default="tpe,grid")
    ap.add_argument("--pools", default="8,12,16,24")
    ap.add_argument("--es", default="1,2,3")
    ap.add_argument("--cache", default=None)
    args = ap.parse_args(argv)
    table = Table(args.table)
    cache_path = Path(args.cache or Path(args.table) / "ranking_defaults.json")
    done = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    best_ppl = min(table.final(k) for k in table.keys)
    cells = _cells(args.hpo.split(","), [int(p) for p in args.pools.split(",")], [int(e) for e in args.es.split(",")])
    results: dict[str, dict[tuple, tuple[float, float]]] = {}
    for name, options in CANDIDATES.items():
        for hpo, pool, e in cells:
            opts = {**BASE, **options, "hpo": hpo, "pool": pool, "rounds_every": e, "seeds": args.seeds}
            opts["max_rounds"] = (table.settings.epochs - 1) // e  # what the table's epochs allow
            if opts["grid_death_rate"] is None:
                opts.pop("grid_death_rate")
            key = json.dumps({**opts, "table_seeds": list(table.settings.seeds), "configs": table.keys,
                              "neg_inf_rule": NEG_INF_RULE}, sort_keys=True)
            if key not in done:
                out = replay_many(table, argparse.Namespace(**opts))
                done[key] = {"rank": out["summary"]["rank"]["mean"],
                             "chosen": [r["chosen"]["key"] for r in out["replays"]]}
                atomic_write_json(done, cache_path, indent=None)
            regret = statistics.mean(table.final(k) - best_ppl for k in done[key]["chosen"])
            results.setdefault(name, {})[(hpo, pool, e)] = (done[key]["rank"], regret)
    es = sorted({e for _, _, e in cells})
    out = [f"Table {args.table} (seeds {list(table.settings.seeds)}, {len(table.keys)} configurations, best "
           f"{best_ppl:.1f} test ppl); hpo {args.hpo}, pools {args.pools}, {args.seeds} replay seeds per cell; "
           f"-inf rule {NEG_INF_RULE}.", "",
           "| candidate default | " + " | ".join(f"E={e} rank / regret" for e in es)
           + " | all: rank / regret | cells rank ≤ loss |", "|---|" + "---|" * (len(es) + 2)]
    loss = results["loss"]
    order = sorted(results, key=lambda n: (statistics.mean(r for r, _ in results[n].values()),
                                           statistics.mean(g for _, g in results[n].values())))
    for name in order:
        cellz = results[name]
        per_e = [[cellz[c] for c in cellz if c[2] == e] for e in es]
        row = [f"{statistics.mean(r for r, _ in v):.1f} / {statistics.mean(g for _, g in v):.1f}" for v in per_e]
        allr = statistics.mean(r for r, _ in cellz.values())
        allg = statistics.mean(g for _, g in cellz.values())
        wins = sum(cellz[c][0] <= loss[c][0] + 1e-9 for c in cellz)
        out.append(f"| {name} | " + " | ".join(row) + f" | {allr:.2f} / {allg:.2f} | {wins}/{len(cellz)} |")
    out += ["", f"lowest mean rank over all cells: {order[0]}"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
