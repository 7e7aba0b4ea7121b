"""``benchmarks/ranking_defaults.py`` (issue 20: which ranking signal should be the default) on the
committed tiny table: a cell is the replay's own mean rank, the regret is the chosen configurations'
mean test perplexity minus the table's best, and a rerun reads every replay from the cache."""
from __future__ import annotations

import argparse
import statistics

import pytest
from helpers import REPO, load_benchmark

TINY = REPO / "tables" / "tiny"


def test_cells_are_the_replays_and_a_rerun_reads_the_cache(tmp_path, capsys, monkeypatch):
    from lsh_tune.cli.replay import replay_many
    from lsh_tune.table import Table

    rd = load_benchmark("ranking_defaults")
    argv = [str(TINY), "--seeds", "2", "--hpo", "tpe", "--pools", "3", "--es", "1", "--cache", str(tmp_path / "c.json")]
    assert rd.main(argv) == 0
    first = capsys.readouterr().out
    table = Table(TINY)
    opts = {**rd.BASE, **rd.CANDIDATES["loss"], "hpo": "tpe", "pool": 3, "rounds_every": 1, "seeds": 2,
            "max_rounds": table.settings.epochs - 1}
    opts.pop("grid_death_rate")
    out = replay_many(table, argparse.Namespace(**opts))
    best = min(table.final(k) for k in table.keys)
    regret = statistics.mean(table.final(r["chosen"]["key"]) - best for r in out["replays"])
    row = next(line for line in first.splitlines() if line.startswith("| loss |"))
    rank = out["summary"]["rank"]["mean"]
    # the printed numbers are the replay's, rounded as printed (1 and 2 decimals)
    assert row.split(" | ")[1] == f"{rank:.1f} / {regret:.1f}", row
    assert row.split(" | ")[2] == f"{rank:.2f} / {regret:.2f}", row
    assert row.endswith("| 1/1 |")                 # loss is no worse than itself
    assert sum(line.startswith("| ") for line in first.splitlines()) == len(rd.CANDIDATES) + 1  # + header
    monkeypatch.setattr(rd, "replay_many", lambda *a, **k: pytest.fail("replayed again despite the cache"))
    assert rd.main(argv) == 0
    assert capsys.readouterr().out == first
