"""Ranking signals (:mod:`lsh_tune.search.signals`): the registry, each signal, the not-learning rule and
the −inf rule, on real data — the committed table ``tables/bench`` (48 configurations × 2 seeds of a
2×128 stacked LSTM on 150k PTB tokens, every epoch's spectra and losses) — and a real tiny search on a
PTB slice whose learning rate makes some candidates diverge (Ray-free: the trainable's work is done here
with the same pieces and handed to the ledger as the scheduler would)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov.distance import fill_neg_inf, ls_distances
from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search._pool import CandidatePool, PoolConfig, choose_removed
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.signals import (RANKING_METRICS, RISE_FACTOR, SIGNALS, LSDistance, RankAverage, RankingSignal,
                                     RoundData, ValLoss, not_learning, register_signal, signal_class, signal_for,
                                     signal_from_dict)

BENCH = Path(__file__).resolve().parents[1] / "tables" / "bench"
ROWS = BENCH / "rows"
needs_bench = pytest.mark.skipif(not (BENCH / "manifest.json").exists(), reason="committed bench table missing")
#: The bench run whose validation perplexity more than doubles between two evaluations (epoch 3 → 4, seed 1).
SPIKE = "ER-SET-magnitude-random-dr0.80"


def _run(key: str, seed: int) -> dict:
    return json.loads((ROWS / f"{key}__s{seed}.json").read_text())


def _spectra(run: dict, state: str = "h") -> np.ndarray:
    return np.asarray([e["ls"][state] for e in run["epochs"]], dtype=np.float64)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """SVDs (the PCA fits) on one BLAS thread: with two, on this loaded 2-core machine, one 196 × 256 SVD took
    1 s instead of 5 ms."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def bench() -> dict[tuple[str, int], dict]:
    """(key, seed) -> run of every bench row (the reference under ``"reference"``)."""
    out = {}
    for f in sorted(ROWS.glob("*.json")):
        key, seed = f.stem.rsplit("__s", 1)
        out[key, int(seed)] = json.loads(f.read_text())
    return out


# ----------------------------------------------------------------------------- the registry
def test_the_registry_gives_the_metric_choices_and_builds_each_signal_from_a_config():
    from lsh_tune.table import ReplaySettings

    assert RANKING_METRICS == ("ls", "loss", "hybrid") == tuple(SIGNALS)
    for cls in (SearchConfig, ReplaySettings):
        metric = next(f for f in fields(cls) if f.name == "metric")
        assert metric.metadata["choices"] == RANKING_METRICS
    cfg = SearchConfig(metric="ls", ls_state="hc", ls_top=16, ls_fit="authors", ls_distance="cosine", seed=3)
    assert cfg.signal() == LSDistance(state="hc", embedding="pca", distance="cosine", fit="authors", top=16, seed=3)
    assert SearchConfig(metric="loss").signal() == ValLoss()
    assert SearchConfig(metric="hybrid", ls_state="hc").signal() == RankAverage(LSDistance(state="hc"))
    assert [signal_class(m).needs_reference for m in RANKING_METRICS] == [True, False, True]
    for signal in (cfg.signal(), ValLoss(), RankAverage(LSDistance(top=8))):
        assert signal_from_dict(json.loads(json.dumps(signal.to_dict()))) == signal  # what a ledger's state keeps
        assert signal.describe() and signal.label


@pytest.mark.parametrize("build, message", [
    (lambda: signal_class("acc"), "metric='acc' is not allowed; choose one of: ls, loss, hybrid"),
    (lambda: SearchConfig(metric="acc"), "metric='acc' is not allowed; choose one of: ls, loss, hybrid"),
    (lambda: PoolConfig(4, metric="acc"), "metric='acc' is not allowed; choose one of: ls, loss, hybrid"),
    (lambda: LSDistance(fit="paper"), "ls_fit='paper' is not allowed; choose one of: pool, candidate, authors"),
    (lambda: LSDistance(state="c"), "ls_state='c' is not allowed; choose one of: h, hc"),
    (lambda: signal_from_dict({"name": "ls", "embeding": "pca"}), "does not fit LSDistance"),
    (lambda: register_signal(type("Again", (ValLoss,), {"name": "ls"})), "name 'ls' is empty or taken"),
])
def test_bad_signals_are_refused_naming_the_value_and_the_allowed_ones(build, message):
    with pytest.raises(LSHUsageError, match=message):
        build()


@pytest.fixture
def top1_signal():
    """A signal of one class, registered for the test and removed after it."""

    @dataclass(frozen=True)
    class FirstExponent(RankingSignal):
        """|λ_1 − λ̂_1|: the leading exponent's distance to the trained reference's (nats per step)."""

        name: ClassVar[str] = "top1"
        label: ClassVar[str] = "|Δλ1|"
        needs_reference: ClassVar[bool] = True
        result_keys: ClassVar[tuple[str, ...]] = ("ls",)
        reported_key: ClassVar[str] = "ls_distance_own_fit"

        def make_fit(self, reference_history, directory=None):
            return LSDistance().make_fit(reference_history, directory)

        def values(self, data: RoundData) -> dict[str, float]:
            ref = data.ls_fit.reference[-1][0]
            return {cid: abs(data.ls_fit.spectra[cid][eps[-1]][0] - ref) for cid, eps in data.epochs.items()}

    register_signal(FirstExponent)
    yield FirstExponent
    SIGNALS.pop("top1")


@needs_bench
def test_a_new_signal_is_one_class_and_the_ledger_ranks_by_it(top1_signal, bench):
    keys = ["uniform-magnitude-nonzeros-random-dr0.50", "ER-SET-nonzeros-random-dr0.80",
            "ER-global_magnitude-none-random-dr0.60", "uniform-threshold-none-random-dr0.80"]
    signal = top1_signal()
    reference = _spectra(bench["reference", 0])
    schedule = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=3, metric="top1")
    ledger = SearchLedger.create(schedule, "random", _space(), None, ls_fit=signal.make_fit(reference), signal=signal)
    cids = [c.cid for c in ledger.pool.active()]
    decision = None
    for cid, key in zip(cids, keys):
        run = bench[key, 0]
        decision = ledger.on_boundary(cid, 1, None, {"val_loss": run["epochs"][1]["val_loss"]},
                                      spectra={0: run["epochs"][0]["ls"]["h"], 1: run["epochs"][1]["ls"]["h"]})
    expected = sorted(cids, key=lambda c: abs(bench[keys[cids.index(c)], 0]["epochs"][1]["ls"]["h"][0]
                                                - reference[-1][0]))
    assert decision is not None and [cid for cid, _ in decision.ranking] == expected
    assert ledger.meta["signal"] == {"name": "top1"}


def _space():
    from lsh_tune.space import DEFAULT_SPACE

    return DEFAULT_SPACE


# ----------------------------------------------------------------------------- each signal
def test_the_loss_ranks_what_was_reported_and_names_what_is_missing():
    data = RoundData({"a": [1], "b": [1]}, {"a": 5.0, "b": None}, {"b": {"val_loss": 4.5}})
    assert ValLoss().values(data) == {"a": 5.0, "b": 4.5}
    with pytest.raises(LSHUsageError, match="candidate 'b' reported no 'val_loss' at epoch 1"):
        ValLoss().values(RoundData({"b": [1]}, {}, {}))


@needs_bench
def test_the_ls_distance_ranks_the_fit_or_what_trials_report(bench):
    keys = ["uniform-magnitude-nonzeros-random-dr0.50", "ER-SET-nonzeros-random-dr0.80"]
    signal = LSDistance()
    fit = signal.make_fit(_spectra(bench["reference", 0]))
    for key in keys:
        for e in range(3):
            fit.add(key, e, bench[key, 0]["epochs"][e]["ls"]["h"])
    data = RoundData({k: [2] for k in keys}, {}, {}, fit)
    assert signal.values(data) == fit.distances({k: [2] for k in keys})
    reported = RoundData({k: [2] for k in keys}, {keys[0]: 0.5, keys[1]: 0.25}, {})
    assert signal.values(reported) == {keys[0]: 0.5, keys[1]: 0.25}
    with pytest.raises(LSHUsageError, match="reported no 'ls_distance_own_fit'"):
        signal.values(RoundData({"x": [1]}, {}, {}))


@needs_bench
@pytest.mark.parametrize("epoch", [1, 3])
def test_the_authors_fit_measures_against_the_reference_at_the_same_epoch(bench, epoch):
    reference = _spectra(bench["reference", 0])
    run = _spectra(bench["ER-threshold-none-random-dr0.90", 0])  # a dead-unit run: −inf → 0 matters here
    assert np.isneginf(run[epoch]).any()
    authors = LSDistance(fit="authors").make_fit(reference)
    own = LSDistance(fit="candidate").make_fit(reference)
    for e in range(epoch + 1):
        authors.add("run", e, run[e])
        own.add("run", e, run[e])
        authors.add("ref", e, reference[e])
        own.add("ref", e, reference[e])
    got = authors.distances({"run": [epoch], "ref": [epoch]})
    # the authors' sources/util.py LE_distance_main: PCA on [ref 0..e, candidate 0..e], −inf → 0, ref at e
    expected, _ = ls_distances(reference[:epoch + 1], {"run": run[:epoch + 1]}, neg_inf_fill=0.0)
    assert got["run"] == pytest.approx(expected["run"], rel=1e-12)  # the same float64 computation
    # the reference's own history is at distance 0 from itself at the same epoch, not from its trained end
    assert got["ref"] == pytest.approx(0.0, abs=1e-9)  # 1e-9: PCA scores of identical rows, rounding only
    assert own.distances({"ref": [epoch]})["ref"] > 1.0  # nats-per-step PCA units: far from the trained reference


@needs_bench
def test_the_hybrid_is_the_mean_of_the_ls_rank_and_the_loss_rank(bench):
    keys = sorted({k for k, s in bench if k != "reference" and s == 0})[:10]
    signal = RankAverage()
    fit = signal.make_fit(_spectra(bench["reference", 0]))
    for key in keys:
        for e in range(2):
            fit.add(key, e, bench[key, 0]["epochs"][e]["ls"]["h"])
    info = {k: {"val_loss": bench[k, 0]["epochs"][1]["val_loss"]} for k in keys}
    data = RoundData({k: [1] for k in keys}, {}, info, fit)
    ls = fit.distances({k: [1] for k in keys})
    ls_rank = rankdata([ls[k] for k in keys])
    loss_rank = rankdata([info[k]["val_loss"] for k in keys])
    assert signal.values(data) == {k: (a + b) / 2 for k, a, b in zip(keys, ls_rank, loss_rank)}
    with pytest.raises(LSHUsageError, match="reported no 'val_loss'"):
        signal.values(RoundData({k: [1] for k in keys}, {}, {}, fit))


# ----------------------------------------------------------------------------- not learning
def test_not_learning_says_why():
    assert not_learning({"val_loss": 6.0, "val_ppl": 403.4}, 500.0, 10000.0) is None
    assert not_learning({"train_loss": float("inf"), "val_ppl": 400.0}) == "non-finite train loss (inf)"
    assert not_learning({"val_loss": 10.0}, None, 10000.0) == "val ppl 22,026 > 10,000 at initialisation"
    assert not_learning({"val_loss": 800.0}, None, None) == "non-finite val ppl (inf)"  # exp(800) overflows
    assert not_learning({"val_ppl": 2.0 * 774 + 1}, 774.0) == "val ppl 1,549 > 2 × 774 at its previous evaluation"
    assert not_learning({"val_ppl": 2.0 * 774}, 774.0) is None  # the factor itself is still learning
    assert not_learning({"density": 0.3}, 500.0, 10000.0) is None  # nothing to judge by


@needs_bench
def test_on_the_bench_table_the_rule_flags_only_the_one_spike_and_never_the_unigram_level(bench):
    """The factor's justification (:mod:`lsh_tune.search.signals`): of 96 runs × epochs 1…6, the rule with
    the reference's epoch-0 perplexity flags exactly one evaluation, the SET spike 774 → 1,715."""
    flagged = []
    for (key, seed), run in bench.items():
        if key == "reference":
            continue
        untrained = math.exp(bench["reference", seed]["epochs"][0]["val_loss"])
        ppl = [r.get("val_ppl") for r in run["epochs"]]
        for e in range(1, len(ppl)):
            why = not_learning({"val_loss": run["epochs"][e]["val_loss"], "val_ppl": ppl[e]},
                               ppl[e - 1] if e > 1 else None, untrained)
            if why is not None:
                flagged.append((key, seed, e, why))
    assert flagged == [(SPIKE, 1, 4, "val ppl 1,715 > 2 × 774 at its previous evaluation")]
    assert 9900 < math.exp(bench["reference", 0]["epochs"][0]["val_loss"]) < 10100  # ≈ V = 10,000


@needs_bench
def test_a_real_spiking_candidate_is_ranked_behind_every_learning_one(bench):
    """Six bench runs (seed 1), E = 2: the LS (default signal) keeps the SET run second of three at epoch 4;
    its validation perplexity more than doubled since epoch 2 (788 → 1,715), so it is ranked last and removed."""
    keys = [SPIKE, "ER-global_magnitude-nonzeros-random-dr0.80", "uniform-global_magnitude-nonzeros-random-dr0.50",
            "uniform-SET-none-random-dr0.80", "ER-global_magnitude-magnitude-random-dr0.90",
            "ER-threshold-none-random-dr0.80"]
    reference = bench["reference", 1]
    schedule = SearchLedger.pool_config_for("grid", pool_size=6, rounds_every=2, max_epochs=6, final_k=2,
                                            untrained_ppl=math.exp(reference["epochs"][0]["val_loss"]))
    signal = LSDistance()
    ledger = SearchLedger.create(schedule, "grid", _space(), None, ls_fit=signal.make_fit(_spectra(reference)),
                                 signal=signal)  # grid: no refills, the six runs are the whole search
    run_of = dict(zip([c.cid for c in ledger.pool.active()], keys))
    decisions = []
    for epoch, first in ((2, 0), (4, 3)):
        for c in list(ledger.pool.active()):
            run = bench[run_of[c.cid], 1]["epochs"]
            info = {"val_loss": run[epoch]["val_loss"], "val_ppl": run[epoch]["val_ppl"]}
            d = ledger.on_boundary(c.cid, epoch, None, info,
                                   spectra={e: run[e]["ls"]["h"] for e in range(first, epoch + 1)})
            if d is not None:
                decisions.append(d)
    spike = next(cid for cid, key in run_of.items() if key == SPIKE)
    first, second = decisions
    assert spike not in first.removed and not first.not_learning
    assert second.ranking[-1][0] == spike and second.removed == [spike]
    assert second.not_learning == {spike: "val ppl 1,715 > 2 × 788 at its previous evaluation"}
    values = dict(second.ranking)
    assert sum(v < values[spike] for v in values.values()) == 1  # by its LS distance alone it was second
    assert ledger.pool.table()[int(spike[1:])]["not_learning"] == second.not_learning[spike]


def test_not_learning_candidates_are_removed_first_in_brackets_too():
    values = {"a": 0.1, "b": 0.9, "c": 0.2, "d": 0.3}
    brackets = {"a": 0, "b": 0, "c": 1, "d": 1}
    assert choose_removed(values, brackets, 2) == ["b", "d"]
    assert choose_removed(values, brackets, 2, {"a": "x", "c": "y"}, {"a": 5e4, "c": 2e4}) == ["a", "c"]
    pool = CandidatePool(PoolConfig(4, rounds_every=1, max_epochs=3, metric="loss", untrained_ppl=1e4),
                         [{"x": i} for i in range(4)])
    for cid, loss in zip(pool.candidates, (6.0, 5.5, float("nan"), 11.0)):
        pool.record(cid, 1, loss, {"val_loss": loss})
    decision = pool.decide(lambda n: [{"x": 9}] * n)
    assert [cid for cid, _ in decision.ranking] == ["c001", "c000", "c003", "c002"]  # NaN: behind 11 nats
    assert set(decision.not_learning) == {"c002", "c003"} and decision.removed == ["c002", "c003"]


# ----------------------------------------------------------------------------- the −inf rule
@needs_bench
@pytest.mark.parametrize("state", ["h", "hc"])
def test_dead_unit_runs_do_not_take_over_the_pool_embedding(bench, state):
    """Four bench runs hold −inf exponents (2 configurations × 2 seeds, up to 128 of 256 per spectrum).
    Property: in the pool-wide PCA fit (reference + all 48 runs, epochs 0..e), the other runs' distances
    rank as in a fit without the dead runs (Spearman ρ ≥ 0.99; measured ≥ 0.993 over seeds, states and
    e = 1..3), and with ``h`` the first PCA axis explains as much as without them (asserted within 0.1;
    measured within 0.02). With −inf → 0 (the authors' rule) the same ρ falls to 0.24 (``h``)."""
    worst_floor, worst_zero = 1.0, 1.0
    for seed in (0, 1):
        reference = _spectra(bench["reference", seed], state)
        runs = {k: _spectra(r, state) for (k, s), r in bench.items() if s == seed and k != "reference"}
        dead = {k for k, h in runs.items() if np.isneginf(h).any()}
        assert len(dead) == 2
        alive = sorted(set(runs) - dead)
        for e in (1, 2, 3):
            def distances(keys, rule):
                fit = LSDistance(state=state).make_fit(reference) if rule == "floor" else None
                if fit is None:
                    return ls_distances(reference, {k: runs[k][:e + 1] for k in keys}, neg_inf_fill=rule)[0]
                for k in keys:
                    for j in range(e + 1):
                        fit.add(k, j, runs[k][j])
                return fit.distances({k: [e] for k in keys})

            for rule in ("floor", 0.0):
                with_dead, without = distances(sorted(runs), rule), distances(alive, rule)
                rho = spearmanr([with_dead[k] for k in alive], [without[k] for k in alive]).statistic
                if rule == "floor":
                    worst_floor = min(worst_floor, rho)
                else:
                    worst_zero = min(worst_zero, rho)
            if state == "h":
                share = {}
                for name, keys in (("with", sorted(runs)), ("without", alive)):
                    rows = fill_neg_inf(np.concatenate([reference] + [runs[k][:e + 1] for k in keys]))
                    sv = np.linalg.svd(rows - rows.mean(0), compute_uv=False)
                    share[name] = sv[0] ** 2 / (sv ** 2).sum()
                assert abs(share["with"] - share["without"]) < 0.1, (seed, e, share)
    assert worst_floor >= 0.99
    if state == "h":
        assert worst_zero < 0.5  # the rule it replaces fails the property (measured 0.24)


# ----------------------------------------------------------------------------- replay
@pytest.fixture(scope="module")
def bench_table():
    from lsh_tune.table import Table

    return Table(BENCH)


@needs_bench
@pytest.mark.parametrize("metric, fit", [("ls", "pool"), ("ls", "authors"), ("hybrid", "pool"), ("loss", "pool")])
def test_replays_rank_every_not_learning_candidate_last(bench_table, metric, fit):
    from lsh_tune.table import ReplaySettings, replay_search

    table = bench_table
    out = replay_search(table, ReplaySettings(hpo="tpe", metric=metric, ls_fit=fit, pool=12, rounds_every=1,
                                              max_rounds=5, seed=3))
    assert out["chosen"]["rank"] >= 1 and len(out["rounds"]) >= 2
    for r in out["rounds"]:
        order = [cid for cid, _ in r["ranking"]]
        bad = [order.index(c) for c in r["not_learning"]]
        assert all(i >= len(order) - len(bad) for i in bad), r  # the not-learning ones close the ranking


def _mean_chosen_rank(table, metric: str, rounds_every: int) -> float:
    """Issue 20's acceptance cell: LSH-TPE, pool 12, replay seeds 0..9, as many rounds as the table allows."""
    from lsh_tune.table import ReplaySettings, replay_search

    ranks = [replay_search(table, ReplaySettings(hpo="tpe", metric=metric, pool=12, rounds_every=rounds_every,
                                                 max_rounds=(table.settings.epochs - 1) // rounds_every,
                                                 seed=s))["chosen"]["rank"] for s in range(10)]
    return float(np.mean(ranks))


@needs_bench
def test_the_default_signal_chooses_no_worse_than_the_loss_on_the_bench_table(bench_table):
    """The default (hybrid) in issue 20's acceptance cell: its chosen configuration's mean rank is no worse
    than the loss's at E = 1 and E = 3 on ``tables/bench`` (BENCHMARKS.md "Ranking signals": E = 1 hybrid 5.6
    on an Intel Xeon, 7.2 on an AMD EPYC, both AVX-512 — the hybrid's half-integer mean ranks make it
    sensitive to near-ties in the LS fit — against the loss's 8.6 on both; E = 3 5.2 = 5.2 on both). On the
    held-out seed 2 at E = 1 (7.5 vs 8.8, measured on the EPYC only; at E = 3 there the two differ by one
    replay in ten, 5.2 vs 5.0, so that cell is reported, not asserted). Ranks of committed final
    perplexities: no float tolerance."""
    from lsh_tune.search.signals import DEFAULT_METRIC
    from lsh_tune.table import ReplaySettings, Table

    assert SearchConfig().metric == ReplaySettings().metric == DEFAULT_METRIC == "hybrid"
    for e in (1, 3):
        assert _mean_chosen_rank(bench_table, DEFAULT_METRIC, e) <= _mean_chosen_rank(bench_table, "loss", e), e
    seed2 = BENCH.with_name("bench_seed2")
    if (seed2 / "manifest.json").exists():
        held_out = Table(seed2)
        assert _mean_chosen_rank(held_out, DEFAULT_METRIC, 1) < _mean_chosen_rank(held_out, "loss", 1)


@needs_bench
def test_the_ls_presets_set_the_published_settings_and_replay_as_those_settings_given_by_hand(bench_table):
    """``--ls-preset authors`` is the authors' code (per-candidate fit against the reference at the same
    epoch, joint QR); ``paper`` Appendix B's per-candidate fit; a replay under a preset is the replay
    with the preset's settings given one by one."""
    from lsh_tune.search.signals import LS_PRESETS
    from lsh_tune.table import ReplaySettings, replay_search

    authors = SearchConfig(ls_preset="authors")
    assert (authors.ls_fit, authors.ls_qr, authors.ls_embedding, authors.ls_distance, authors.ls_state) == \
        ("authors", "joint", "pca", "l2", "h")
    assert SearchConfig(ls_preset="paper").ls_fit == "candidate"
    assert SearchConfig(ls_preset="paper", ls_fit="candidate").ls_fit == "candidate"   # the preset's own value
    for preset, values in LS_PRESETS.items():
        by_hand = {k: v for k, v in values.items() if k != "ls_qr"}   # a replay's QR is its table's
        kw = dict(hpo="tpe", pool=12, rounds_every=1, max_rounds=5, seed=3)
        a = replay_search(bench_table, ReplaySettings(ls_preset=preset, **kw))
        b = replay_search(bench_table, ReplaySettings(**by_hand, **kw))
        assert a["chosen"] == b["chosen"] and [r["ranking"] for r in a["rounds"]] == [r["ranking"] for r in b["rounds"]]


# ----------------------------------------------------------------------------- a real tiny search
#: The tiny preset's learning rate is 40; at 130 on 2,000 PTB tokens about half the candidates end epoch 1
#: above V = 10,000 validation perplexity (measured: 3,634–282,944 over eight grid candidates).
DIVERGING_LR = 130.0


def _spectrum(trainer, tokens, ls_config) -> list[float]:
    from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum

    with trainer.evaluation_weights():
        return lyapunov_spectrum(trainer.model, tokens, LSConfig(**ls_config)).tolist()


@pytest.fixture(scope="module")
def diverging_search(tmp_path_factory):
    """A grid search of 8 candidates (E = 1, 2 finalists, 3 epochs) with the real dense reference, trained
    here epoch by epoch as the candidate trainable does and handed to the ledger as the scheduler does; the
    driver's events (rounds) written by the real :class:`SearchProgress`."""
    import torch

    from lsh_tune.search.candidate import build_candidate, trial_settings
    from lsh_tune.search.keys import ROUND_INFO_KEYS
    from lsh_tune.search.run.reference import prepare_reference, search_corpus, train_reference
    from lsh_tune.search.views.events import EventLog
    from lsh_tune.search.views.progress import SearchProgress

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = SearchConfig(hpo="grid", metric="ls", pool=8, rounds_every=1, final_k=2, max_epochs=3, reference_epochs=1,
                       gpus_per_trial=0, max_tokens=2000, lr=DIVERGING_LR, ls_k=1, ls_steps=10, verbose=0,
                       storage_path=str(tmp_path_factory.mktemp("diverging")), name="diverging")
    corpus = search_corpus(cfg)
    reference = prepare_reference(cfg, corpus)
    dense = train_reference(reference["plan"], corpus)
    cfg.save()
    signal = cfg.signal()
    vocab = float(len(corpus.vocab))
    ledger = SearchLedger.create(cfg.pool_config(untrained_ppl=vocab), cfg.hpo, cfg.space, cfg.experiment(),
                                 ls_fit=signal.make_fit(dense.spectra()), signal=signal,
                                 death_rate=cfg.grid_death_rate)
    progress = SearchProgress(EventLog(cfg.experiment()), lambda: ledger)
    progress.start(name=cfg.name)
    settings = trial_settings(cfg, cfg.space.names)
    tokens = reference["tokens"]
    trainers, seen = {}, {}
    try:
        while ledger.pool.phase == "selection":
            for c in [c for c in ledger.pool.active() if c.pending is None]:
                if c.cid not in trainers:
                    trainers[c.cid] = build_candidate(settings, {"cid": c.cid, **c.config}, corpus)[0]
                trainer = trainers[c.cid]
                spectra = {0: _spectrum(trainer, tokens, settings.ls_config)} if trainer.epoch == 0 else {}
                m = trainer.train_epoch()
                spectra[trainer.epoch] = _spectrum(trainer, tokens, settings.ls_config)
                info = {k: m[k] for k in ROUND_INFO_KEYS if k in m}
                seen[c.cid, trainer.epoch] = m["val_ppl"]
                ledger.on_boundary(c.cid, trainer.epoch, None, info, spectra=spectra)
                progress.sync_rounds()
        for c in [c for c in ledger.pool.alive() if c.status == "final"]:
            trainer = trainers[c.cid]
            while trainer.epoch < cfg.max_epochs:
                m = trainer.train_epoch()
            test_ppl = math.exp(min(trainer.evaluate("test"), 700.0))
            ledger.on_final(c.cid, {"epoch": trainer.epoch, "val_ppl": m["val_ppl"], "test_ppl": test_ppl})
        progress.sync_rounds()
    finally:
        torch.set_num_threads(threads)
    return cfg, ledger, seen, vocab


def test_every_diverged_candidate_is_ranked_behind_every_learning_one_and_the_report_says_why(diverging_search):
    from lsh_tune.search.views.events import read_events
    from lsh_tune.search.views.history import SearchHistory
    from lsh_tune.search.views.report import build_report, render_markdown

    cfg, ledger, seen, vocab = diverging_search
    rounds = ledger.pool.rounds
    assert len(rounds) == 2 and ledger.done
    diverged_any = learning_any = kept_by_ls = False
    for r in rounds:
        ranking = [cid for cid, _ in r["ranking"]]
        epoch = {cid: ledger.pool.candidates[cid].epochs[r["round"] - ledger.pool.candidates[cid].born_round]
                 for cid in ranking}
        # diverged: worse than an untrained model (a uniform guess over V words), or not a number at all
        diverged = [c for c in ranking if not seen[c, epoch[c]] <= vocab]
        learning = [c for c in ranking if c not in r["not_learning"]]
        diverged_any |= bool(diverged)
        learning_any |= bool(learning)
        assert ranking[:len(learning)] == learning, r  # every learning candidate before any other
        assert set(diverged) <= set(r["not_learning"])
        for c in diverged:
            assert ("at initialisation" in r["not_learning"][c] or "non-finite" in r["not_learning"][c])
        value = dict(r["ranking"])
        kept_by_ls |= any(value[d] < value[c] for d in diverged for c in learning)
    assert diverged_any and learning_any  # the learning rate did what it is here for
    # the H200 incident of issue 20: by its LS distance alone a diverged candidate was ahead of a learning one
    # (measured here in both rounds: 2.8e5 val ppl at LS distance 3.7, the round's smallest)
    assert kept_by_ls
    events = read_events(cfg.experiment(), "round")
    assert [e["not_learning"] for e in events] == [r["not_learning"] for r in rounds]
    start = read_events(cfg.experiment(), "search_start")[0]
    assert start["untrained_ppl"] == vocab and start["signal"] == cfg.signal().describe()
    report = render_markdown(build_report(SearchHistory.load(cfg.experiment())))
    for r in rounds:
        for cid, why in r["not_learning"].items():
            assert f"(not learning: {why})" in report
    assert "val ppl above 10,000 (an untrained model's)" in report and f"Ranked by {cfg.signal().describe()}" in report


def test_the_live_view_names_the_signal_and_says_who_is_not_learning():
    import io

    from rich.console import Console

    from lsh_tune.search.views.console import ConsoleView

    buf = io.StringIO()
    with ConsoleView(Console(file=buf, width=300, soft_wrap=True)) as view:
        view({"kind": "search_start", "pool": 4, "rounds_every": 1, "final_k": 2, "max_epochs": 3, "metric": "hybrid",
              "signal": RankAverage().describe(), "signal_label": RankAverage.label, "untrained_ppl": 10000.0,
              "plan": [[4, 2, 0]], "slots": 1})
        view({"kind": "round", "round": 0, "rounds": 1, "pool": 4, "ranking": [["c001", 1.5], ["c000", 2.0],
              ["c003", 3.5], ["c002", 3.0]], "removed": [], "refilled": [], "generator": "tpe",
              "not_learning": {"c003": "val ppl 1.3e7 > 10,000 at initialisation", "c002": "non-finite val loss (nan)"},
              "best": {"cid": "c001", "value": 1.5, "val_ppl": 450.0}})
    text = buf.getvalue()
    assert f"ranked by {RankAverage().describe()}; not learning (ranked behind every learning candidate)" in text
    assert "best c001 (LS/loss rank average 1.5, val ppl 450.0)" in text
    assert ("not learning (ranked last)  c003: val ppl 1.3e7 > 10,000 at initialisation · c002: non-finite val loss "
            "(nan)") in text
