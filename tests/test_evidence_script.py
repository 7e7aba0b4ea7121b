"""``benchmarks/evidence.py`` (the BENCHMARKS.md evidence sections) on the committed tiny table:
its cells are the replays' own numbers, and a second run reads them from the cache (resumable)."""
from __future__ import annotations

import argparse

import pytest
from helpers import REPO, load_benchmark

TINY = REPO / "tables" / "tiny"


def test_cells_are_the_replays_and_a_rerun_reads_the_cache(tmp_path, capsys, monkeypatch):
    from lsh_tune.cli.replay import replay_many
    from lsh_tune.table import Table

    evidence = load_benchmark("evidence")
    cache = tmp_path / "evidence.json"
    argv = [str(TINY), "--seeds", "2", "--pools", "3,6", "--cache", str(cache), "--sections", "calibration,table2"]
    assert evidence.main(argv) == 0
    first = capsys.readouterr().out
    table = Table(TINY)
    args = argparse.Namespace(**{**evidence.REPLAY_DEFAULTS, "seeds": 2, "hpo": "tpe", "metric": "loss", "pool": 6})
    s = replay_many(table, args)["summary"]
    row = next(line for line in first.splitlines() if line.startswith("| tpe / loss |"))
    assert row.split(" | ")[-1].startswith(f"{s['test_ppl']['mean']:.1f} ± {s['test_ppl']['ci95']:.1f} "
                                           f"(rank {s['rank']['mean']:.1f}, best {s['best_selected']:.0%})")
    means = {k: table.final(k) for k in table.keys}
    assert f"worst/best = {max(means.values()) / min(means.values()):.2f}" in first
    monkeypatch.setattr(evidence, "replay_many", lambda *a, **k: pytest.fail("replayed again despite the cache"))
    assert evidence.main(argv) == 0
    assert capsys.readouterr().out == first


def test_verdict_counts_match_the_table2_cells(tmp_path, capsys):
    from lsh_tune.search import HPO_METHODS
    from lsh_tune.table import Table

    evidence = load_benchmark("evidence")
    cache = tmp_path / "evidence.json"
    assert evidence.main([str(TINY), "--seeds", "2", "--pools", "3,6", "--cache", str(cache),
                          "--sections", "verdict"]) == 0
    out = capsys.readouterr().out
    ev = evidence.Evidence(Table(TINY), cache, 2)
    loss_ahead = ls_ahead = 0
    for hpo in HPO_METHODS:
        for pool in (3, 6):
            ls = ev.replay(hpo=hpo, metric="ls", pool=pool)["test_ppl"]["mean"]
            loss = ev.replay(hpo=hpo, metric="loss", pool=pool)["test_ppl"]["mean"]
            loss_ahead += loss < ls
            ls_ahead += ls < loss
    assert f"loss ahead in {loss_ahead}, LS ahead in {ls_ahead} " in out
    assert f"(Table 2: {2 * len(HPO_METHODS)} generator × budget pairs)" in out
    assert "grid: 0 of 8 choices off it; 0.0 nearest-configuration answers per replay" in out


def test_b2_at_e2_replays_with_rounds_every_2(tmp_path, capsys):
    from lsh_tune.cli.replay import replay_many
    from lsh_tune.table import Table

    evidence = load_benchmark("evidence")
    assert evidence.main([str(TINY), "--seeds", "2", "--pools", "3,4,6", "--cache", str(tmp_path / "c.json"),
                          "--sections", "b2e2", "--ls-tops", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### Table B2, E = 2 (1 round): LS settings (LSH-TPE, pool 4;")
    args = argparse.Namespace(**{**evidence.REPLAY_DEFAULTS, "seeds": 2, "hpo": "tpe", "metric": "ls", "pool": 4,
                                 "rounds_every": 2, "max_rounds": 1, "ls_top": 8})
    s = replay_many(Table(TINY), args)["summary"]
    row = next(line for line in out.splitlines() if line.startswith("| h | pca | l2 | epoch | 8 |"))
    assert row == (f"| h | pca | l2 | epoch | 8 | {s['test_ppl']['mean']:.1f} ± {s['test_ppl']['ci95']:.1f} | "
                   f"{s['best_selected']:.0%} | {s['rank']['mean']:.1f} |")
