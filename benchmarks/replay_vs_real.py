"""Replay vs reality: one real LSH search in a table's setting against the replay of the same search.

Runs ``lsh-tune search --table TABLE`` (real Ray Tune trials that train, on a local Ray instance)
and ``replay_search`` with the same generator, metric, pool, E, finalists and seed, then prints
how far they agree:

* the dense reference: the search of seed s retrains the table's ``reference`` run at seed s, so
  their spectra must agree to the table's 7 digits (``reference_max_abs_diff``);
* each candidate id gets the same configuration in both (same ledger, seed and tabulated space);
* per round: Spearman ρ between the real ranking values and the replayed ones over the
  candidates both ranked, and the overlap of the kept sets. A real candidate trains with seed
  ``crc32(seed, cid)``, the table's runs with ``crc32(table seed, key)``: the two agree up to
  training noise, which is what this measures;
* the chosen configuration of each, its rank in the table and the table's mean test perplexity,
  and the real finalist's own test perplexity against the table's seeds for that configuration.

Resumable: run the same command again after an interruption; the search resumes from its
checkpoints (no finished epoch is retrained) and the comparison is recomputed. The search needs
only the table's manifest, so it can run while the table builds; the comparison waits for the
table (or ``--table-seeds 0`` for the seeds it has). Writes
``<storage>/<name>/replay_vs_real.json``.

    OMP_NUM_THREADS=1 python benchmarks/replay_vs_real.py --table tables/bench --storage-path /tmp/lsh-real \\
        --hpo grid --pool 8 --rounds-every 1 --final-k 2 --num-cpus 2
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    return None if len(a) < 3 else float(spearmanr(a, b)[0])


def compare(cfg, table) -> dict:
    """The comparison of the finished search ``cfg`` with its replay on ``table``."""
    from lsh_tune.search import SearchLedger
    from lsh_tune.search.run.reference import prepare_reference, search_corpus
    from lsh_tune.table import ReplaySettings, replay_search

    pool = SearchLedger.load(cfg.experiment_dir).pool
    replay = replay_search(table, ReplaySettings(
        hpo=cfg.hpo, metric=cfg.metric, pool=cfg.pool_size, rounds_every=cfg.rounds_every, final_k=cfg.final_k,
        max_rounds=cfg.max_rounds, seed=cfg.seed, ls_state=cfg.ls_state, ls_embedding=cfg.ls_embedding,
        ls_distance=cfg.ls_distance, ls_fit=cfg.ls_fit, grid_death_rate=cfg.grid_death_rate))
    out: dict = {"settings": {k: getattr(cfg, k) for k in ("hpo", "metric", "pool_size", "rounds_every", "final_k",
                                                           "seed", "ls_state", "ls_embedding", "ls_distance")}}
    if cfg.signal().needs_reference and cfg.seed in table.settings.seeds:
        mine = prepare_reference(cfg, search_corpus(cfg))["history"]
        theirs = np.array([e["ls"][cfg.ls_state] for e in table.run("reference", cfg.seed)["epochs"]])
        out["reference_max_abs_diff"] = float(np.max(np.abs(np.asarray(mine) - theirs)))
    answers = replay["answers"]
    out["same_configs"] = all(pool.candidates[c].config == answers[c][0] for c in answers if c in pool.candidates)
    rounds = []
    for real, rep in zip(pool.rounds, replay["rounds"]):
        rv, pv = dict(real["ranking"]), dict(rep["ranking"])
        both = [c for c in rv if c in pv]
        kept_real = set(rv) - set(real["removed"])
        kept_rep = set(pv) - set(rep["removed"])
        rounds.append({"round": real["round"], "ranked": len(rv), "common": len(both),
                       "spearman": _spearman([rv[c] for c in both], [pv[c] for c in both]),
                       "kept_overlap": len(kept_real & kept_rep), "kept": len(kept_real)})
    out["rounds"] = rounds
    best = pool.best()
    key, exact = table.nearest(best.config)
    seeds = [table.run(key, s)["final"]["test_ppl"] for s in table.settings.seeds]
    out["real"] = {"cid": best.cid, "key": key, "tabulated": exact, "test_ppl": best.final["test_ppl"],
                   "table_rank": table.rank(key), "table_mean_test_ppl": table.final(key),
                   "table_seed_test_ppl": seeds}
    out["replay"] = {k: replay["chosen"][k] for k in ("cid", "key", "rank", "test_ppl", "mean_test_ppl")}
    out["same_choice"] = key == replay["chosen"]["key"]
    out["n_configs"] = len(table.keys)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True)
    p.add_argument("--storage-path", required=True)
    p.add_argument("--name", default="replay-vs-real")
    p.add_argument("--hpo", default="grid")
    p.add_argument("--metric", default="ls")
    p.add_argument("--pool", type=int, default=8)
    p.add_argument("--rounds-every", type=int, default=1)
    p.add_argument("--final-k", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--table-seeds", default=None, help="compare with only these training seeds of the table")
    args = p.parse_args(argv)

    from lsh_tune.cli import build_parser
    from lsh_tune.cli.search import _init_ray, checked_config
    from lsh_tune.search.tune.tuner import run_search
    from lsh_tune.table import Table

    search = ["search", "--table", args.table, "--hpo", args.hpo, "--metric", args.metric, "--pool", str(args.pool),
              "--rounds-every", str(args.rounds_every), "--final-k", str(args.final_k), "--seed", str(args.seed),
              "--gpus-per-trial", "0", "--cpus-per-trial", "1", "--storage-path", args.storage_path,
              "--name", args.name, "--num-cpus", str(args.num_cpus)]
    resume = (Path(args.storage_path).expanduser() / args.name / "lsh" / "search.json").exists()
    parsed = build_parser().parse_args(search + (["--resume"] if resume else []))
    cfg = checked_config(parsed)
    _init_ray(parsed, cfg.address, cfg.verbose)
    run_search(cfg, resume=resume)
    from lsh_tune.errors import LSHUsageError

    seeds = None if args.table_seeds is None else [int(x) for x in args.table_seeds.split(",")]
    try:
        table = Table(args.table, seeds=seeds)
    except LSHUsageError as e:  # the search can run while the table still builds
        print(f"search done; no comparison yet: {e}. Rerun this command when the table is built (the finished "
              "search is not retrained).")
        return 0
    out = compare(cfg, table)
    (cfg.experiment_dir / "replay_vs_real.json").write_text(json.dumps(out, indent=1) + "\n")
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
