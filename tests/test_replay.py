"""Replays against the committed tiny table (``tables/tiny``, built by ``lsh-tune table build tables/tiny
--preset tiny --first 6``): deterministic per seed, seconds, an LSH grid search checked against a
hand computation from the table's spectra, nearest-configuration answers counted, the baselines."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import ls_distances
from lsh_tune.seeds import derive_seed
from lsh_tune.table import REFERENCE_KEY, ReplaySettings, Table, replay_search, replay_sequential, time_to_targets
from lsh_tune.table._distances import history

TABLE = Path(__file__).resolve().parents[1] / "tables" / "tiny"
pytestmark = pytest.mark.skipif(not (TABLE / "manifest.json").exists(), reason="committed tiny table missing")


@pytest.fixture(scope="module")
def table() -> Table:
    return Table(TABLE)


def test_the_committed_table_is_complete_and_small(table):
    assert not table.missing and len(table.keys) == 6 and table.settings.seeds == (0, 1)
    run = table.run(table.keys[0], 0)
    assert len(run["epochs"]) == table.settings.epochs + 1 and run["epochs"][0]["epoch"] == 0
    assert set(run["epochs"][2]["distance"]) == set(table.settings.distance_names())
    assert sum(p.stat().st_size for p in TABLE.rglob("*.json")) < 1_000_000


def _hand_lsh_grid(table: Table, seed: int, E: int) -> str:
    """LSH-GS by hand: halve by the pool-wide PCA/L2 distance of histories 0..epoch, then the best final val ppl."""
    seeds = table.settings.seeds
    cids = {f"c{i:03d}": key for i, key in enumerate(table.keys)}  # the grid pool in grid order
    train_seed = {cid: seeds[derive_seed(seed, cid) % len(seeds)] for cid in cids}
    reference = history(table.run(REFERENCE_KEY, seeds[seed % len(seeds)]), "h")
    alive, epoch = sorted(cids), 0
    while len(alive) > 2:
        epoch += E
        hist = {cid: history(table.run(cids[cid], train_seed[cid]), "h", epoch) for cid in alive}
        dist, _ = ls_distances(reference, hist, embedding="pca", metric="l2", seed=seed)
        ranked = sorted(alive, key=lambda c: (dist[c], c))
        alive = sorted(ranked[:len(alive) - min(len(alive) // 2, len(alive) - 2)])
    return min(alive, key=lambda c: (table.run(cids[c], train_seed[c])["final"]["val_ppl"], c))


@pytest.mark.parametrize("seed", [0, 1])
def test_replayed_lsh_grid_search_matches_a_hand_computation(table, seed):
    out = replay_search(table, ReplaySettings(hpo="grid", metric="ls", pool=6, rounds_every=1, seed=seed))
    cid = _hand_lsh_grid(table, seed, 1)
    assert out["chosen"]["cid"] == cid
    assert out["chosen"]["key"] == table.keys[int(cid[1:])]
    assert out["substituted"] == 0 and len(out["rounds"]) == 2
    run = table.run(out["chosen"]["key"], out["chosen"]["seed"])
    assert out["chosen"]["test_ppl"] == run["final"]["test_ppl"]


def test_replay_is_deterministic_per_seed_and_takes_seconds(table):
    t0 = time.perf_counter()
    for hpo in ("tpe", "bohb", "hyperband"):
        for metric in ("ls", "loss"):
            s = ReplaySettings(hpo=hpo, metric=metric, pool=6, rounds_every=1, seed=3)
            a, b = replay_search(table, s), replay_search(table, s)
            assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), (hpo, metric)
    assert time.perf_counter() - t0 < 60
    other = replay_search(table, ReplaySettings(hpo="tpe", metric="ls", pool=6, rounds_every=1, seed=4))
    assert other["answers"] != a["answers"] or other["chosen"] != a["chosen"]


def test_untabulated_proposals_are_answered_by_the_nearest_configuration_and_counted(table):
    config = {**table.config(table.keys[2]), "death_rate": 0.5}
    assert table.nearest(config) == (table.keys[2], False)
    assert table.nearest(table.config(table.keys[2])) == (table.keys[2], True)
    out = replay_search(table, ReplaySettings(hpo="random", metric="loss", pool=6, rounds_every=1, seed=0))
    keys = set(table.keys)
    from lsh_tune.table import config_key

    untabulated = [cid for cid, (conf, _) in out["answers"].items() if config_key(conf, table.names) not in keys]
    assert out["substituted"] == len(untabulated) > 0
    for cid, (conf, key) in out["answers"].items():
        assert key == table.nearest(conf)[0]


def test_simulated_time_counts_logged_epochs_under_gpus(table):
    one = replay_search(table, ReplaySettings(hpo="grid", metric="loss", pool=6, rounds_every=1, gpus=1))
    six = replay_search(table, ReplaySettings(hpo="grid", metric="loss", pool=6, rounds_every=1, gpus=6))
    assert one["chosen"] == six["chosen"]
    # one worker: every trained epoch once: rounds 6×1 + 3×1 epochs, then 2 finalists to epoch 3
    assert one["candidate_epochs"] == 6 + 3 + 2 * 1
    assert six["sim_time_s"] < one["sim_time_s"]


def test_sequential_and_asha_baselines(table):
    pytest.importorskip("ray")
    from lsh_tune.table.tune_replay import replay_asha, replay_hyperband

    seq = replay_sequential(table, seed=0)
    assert len(seq["trajectory"]) == 6 and seq["trajectory"][-1]["val_ppl"] <= seq["trajectory"][0]["val_ppl"]
    times = time_to_targets(seq["trajectory"], [seq["chosen"]["test_ppl"], 1.0])
    assert times[1.0] == float("inf") and times[seq["chosen"]["test_ppl"]] <= seq["sim_time_s"]
    for replay in (replay_asha, replay_hyperband):
        a, b = replay(table, budget=9, seed=0), replay(table, budget=9, seed=0)
        assert a == b
        assert a["candidate_epochs"] < 9 * table.settings.epochs  # trials were stopped early
        finished_best = min(p["val_ppl"] for p in a["trajectory"])
        assert a["chosen"]["val_ppl"] == finished_best and a["chosen"]["key"] in table.keys
        assert replay(table, budget=9, seed=0, gpus=3)["sim_time_s"] < a["sim_time_s"]


def test_predictive_power_rows_and_the_last_validation_loss_predicts_test_perplexity(table):
    from lsh_tune.table.analysis import predictive_power, signals

    rows = predictive_power(table, boot=50)
    assert len(rows) == len(signals(table)) * table.settings.epochs
    last = next(r for r in rows if r["signal"] == "val_loss" and r["epoch"] == table.settings.epochs)
    assert last["n"] == 12 and last["rho"] > 0.5 and last["lo"] <= last["rho"] <= last["hi"]
    assert rows == predictive_power(table, boot=50)


def _truncated_copy(dst: Path, top: int) -> Table:
    """tables/tiny with every stored spectrum cut to its ``top`` leading exponents, by hand."""
    import shutil

    shutil.copytree(TABLE, dst, ignore=shutil.ignore_patterns("partial"))
    for path in (dst / "rows").glob("*.json"):
        run = json.loads(path.read_text())
        for rec in run["epochs"]:
            rec["ls"] = {state: spectrum[:top] for state, spectrum in rec["ls"].items()}
        path.write_text(json.dumps(run))
    return Table(dst)


def test_a_top_k_replay_ranks_by_the_leading_exponents_only(table, tmp_path):
    top = 3
    cut = _truncated_copy(tmp_path / "cut", top)
    def result(t, s):
        out = replay_search(t, s)
        assert out.pop("settings")["ls_top"] == s.ls_top
        return out

    for hpo in ("grid", "tpe"):
        s = ReplaySettings(hpo=hpo, metric="ls", pool=6, rounds_every=1, seed=1)
        assert result(table, replace(s, ls_top=top)) == result(cut, s)
    n = len(table.run(REFERENCE_KEY, 0)["epochs"][0]["ls"]["h"])
    full = ReplaySettings(hpo="grid", metric="ls", pool=6, rounds_every=1, seed=1)
    assert result(table, replace(full, ls_top=n)) == result(table, full)
    assert result(table, replace(full, ls_top=1)) != result(table, full)  # the cut is not a no-op here
    with pytest.raises(LSHUsageError, match=f"ls_top={n + 1} exceeds the {n} exponents"):
        replay_search(table, replace(full, ls_top=n + 1))


def test_top_k_predictive_signals_are_computed_from_the_leading_exponents(table):
    from lsh_tune.table.analysis import predictive_power, signals

    n = len(table.run(REFERENCE_KEY, 0)["epochs"][0]["ls"]["h"])
    rows = {(r["signal"], r["epoch"]): r for r in predictive_power(table, boot=20, tops=(1, n))}
    assert len(rows) == len(signals(table, (1, n))) * table.settings.epochs
    for e in range(1, table.settings.epochs + 1):
        assert rows["h/raw/l2/top%d" % n, e]["rho"] == pytest.approx(rows["h/raw/l2", e]["rho"], abs=1e-12)
    # one exponent, no embedding: the distance is |λ1 of the run at e - λ1 of the reference's last epoch|
    from lsh_tune.table.analysis import _top_distances
    from scipy.stats import spearmanr

    d = _top_distances(table, "h/raw/l2/top1")
    e = 2
    x, y = [], []
    for key in table.keys:
        for s in table.settings.seeds:
            lam = table.run(key, s)["epochs"][e]["ls"]["h"][0]
            ref = table.run(REFERENCE_KEY, s)["epochs"][-1]["ls"]["h"][0]
            assert d[key, s][e] == pytest.approx(abs(lam - ref), rel=1e-9)
            x.append(abs(lam - ref))
            y.append(table.run(key, s)["final"]["test_ppl"])
    assert rows["h/raw/l2/top1", e]["rho"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    with pytest.raises(LSHUsageError, match=f"top {n + 1}"):
        predictive_power(table, boot=2, tops=(n + 1,))


def test_replay_command_reports_time_to_each_target(capsys):
    from lsh_tune.cli import main

    assert main(["replay", str(TABLE), "--metric", "sequential", "--pool", "6", "--seeds", "2",
                 "--targets", "1e9,1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    reach = out["summary"]["time_to_target"]
    assert reach["1e+09"]["reached"] == 1.0 and reach["1"] == {"reached": 0.0, "time_s": None}
    first_finished = min(r["trajectory"][0]["time_s"] for r in out["replays"])
    assert reach["1e+09"]["time_s"]["mean"] >= first_finished


def test_replay_command_caps_rounds_at_what_the_tables_epochs_allow(capsys):
    """3 epochs, E = 2: one round fits (a finalist must train after selection); without the cap
    the schedule of a pool of 6 needs more epochs than the table has."""
    from lsh_tune.cli import main

    argv = ["replay", str(TABLE), "--hpo", "grid", "--pool", "6", "--rounds-every", "2", "--seeds", "1", "--json"]
    assert main(argv) == 0
    capped = json.loads(capsys.readouterr().out)["replays"][0]
    assert len(capped["rounds"]) == 1
    assert main(argv + ["--max-rounds", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["replays"][0]["chosen"] == capped["chosen"]
    assert main(argv + ["--max-rounds", "2"]) == 2  # more rounds than 3 epochs allow: the schedule's one-line error


def test_replay_command_reaches_every_setting_and_starts_at_seed(table, capsys):
    """``--seed S --seeds K`` replays S…S+K-1, each the replay of those settings (``--ls-fit`` and
    ``--grid-death-rate`` included, once out of the command line's reach)."""
    from lsh_tune.cli import main

    argv = ["replay", str(TABLE), "--pool", "6", "--seed", "2", "--seeds", "2", "--ls-fit", "candidate",
            "--grid-death-rate", "0.8", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seeds"] == [2, 3]
    for seed, got in zip((2, 3), out["replays"]):
        s = ReplaySettings(pool=6, seed=seed, ls_fit="candidate", max_rounds=table.settings.epochs - 1)
        assert got["settings"] == json.loads(json.dumps(replay_search(table, s)["settings"]))
        assert got["chosen"] == json.loads(json.dumps(replay_search(table, s)["chosen"]))
    assert main(argv[:-1]) == 0
    assert "  seed 3: " in capsys.readouterr().out


@pytest.mark.parametrize("options,needle", [
    (["--hpo", "smac"], "hpo='smac' is not allowed; choose one of: grid"),
    (["--metric", "acc"], "metric='acc' is not allowed; choose one of: ls, loss, hybrid, asha, hyperband, sequential"),
    (["--ls-fit", "global"], "ls_fit='global' is not allowed"),
    (["--metric", "sequential", "--ls-state", "c"], "ls_state='c' is not allowed"),
    (["--seeds", "0"], "--seeds 0: must be at least 1"),
    (["--pool", "x"], "argument --pool: invalid int value: 'x'"),
])
def test_replay_command_refuses_bad_options_in_one_line_before_reading_the_table(tmp_path, capsys, options, needle):
    from lsh_tune.cli import main

    try:
        rc = main(["replay", str(tmp_path / "no-table"), *options])
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("lsh-tune: error: ") and needle in err, err
