"""The Ray-free LSH pool: removal and refill counts, termination, JSON round-trip, determinism."""
import json
import math
import random

import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.search import (FINAL, FINISHED, HPO_METHODS, REMOVED, CandidatePool, PoolConfig, SearchLedger,
                             plan_rounds)
from lsh_tune.search._pool import choose_removed, rank
from lsh_tune.space import DEFAULT_SPACE


def _drive(ledger, values=None, seed=0):
    """Report a metric for every active candidate until halving ends; returns the decisions."""
    rng = random.Random(seed)
    decisions = []
    while ledger.pool.phase == "selection":
        for c in list(ledger.pool.active()):
            v = rng.random() if values is None else values(c)
            d = ledger.on_boundary(c.cid, (len(c.history) + 1) * ledger.pool.config.rounds_every, v)
            if d is not None:
                decisions.append(d)
    return decisions


@pytest.mark.parametrize("n,removed,generated", [(8, 4, 2), (6, 3, 1), (20, 10, 5), (40, 20, 10), (5, 2, 1)])
def test_round_removes_half_and_refills_a_quarter(n, removed, generated):
    cfg = SearchLedger.pool_config_for("random", pool_size=n, rounds_every=1, max_epochs=40)
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, None)
    d = _drive(ledger)[0]
    assert (len(d.ranking), len(d.removed), len(d.generated)) == (n, removed, generated)


def test_removed_are_the_farther_ones_and_nan_ranks_last():
    values = {"a": 0.3, "b": float("nan"), "c": 0.1, "d": math.inf, "e": 0.2}
    assert [c for c, _ in rank(values)] == ["c", "e", "a", "d", "b"]
    assert choose_removed(values, None, 2) == ["b", "d"]


def test_bracketed_removal_ranks_within_brackets():
    values = {"a": 0.1, "b": 0.2, "c": 0.9, "d": 1.0}
    brackets = {"a": 0, "b": 0, "c": 1, "d": 1}
    # Globally c and d are worst; per bracket the worse member of each goes.
    assert sorted(choose_removed(values, brackets, 2)) == ["b", "d"]


def test_schedule_stops_at_final_k_and_budgets():
    assert plan_rounds(PoolConfig(8, rounds_every=1, max_epochs=5)) == [(8, 4, 2), (6, 3, 1), (4, 2, 0)]
    assert plan_rounds(PoolConfig(24, rounds_every=3, max_epochs=30, generates=False)) == [
        (24, 12, 0), (12, 6, 0), (6, 3, 0), (3, 1, 0)]
    assert len(plan_rounds(PoolConfig(20, rounds_every=1, max_epochs=9, max_rounds=2))) == 2
    assert len(plan_rounds(PoolConfig(20, rounds_every=1, max_epochs=9, epoch_budget=30))) == 2
    assert plan_rounds(PoolConfig(2, rounds_every=1, max_epochs=2)) == []


def test_termination_leaves_final_k_finalists_and_best_by_val_ppl():
    cfg = SearchLedger.pool_config_for("tpe", pool_size=8, rounds_every=1, max_epochs=5, final_k=2)
    ledger = SearchLedger.create(cfg, "tpe", DEFAULT_SPACE, None)
    decisions = _drive(ledger)
    assert decisions[-1].done and ledger.pool.phase == "final"
    finalists = ledger.pool.alive()
    assert len(finalists) == 2 and all(c.status == FINAL for c in finalists)
    assert not ledger.pool.ready()
    for i, c in enumerate(finalists):
        ledger.on_final(c.cid, {"val_ppl": 100.0 - i, "test_ppl": 90.0})
    assert ledger.done and ledger.pool.best().cid == finalists[-1].cid
    assert all(c.status in (REMOVED, FINISHED) for c in ledger.pool.candidates.values())


@pytest.mark.parametrize("bad", [dict(pool_size=0), dict(rounds_every=0), dict(final_k=0), dict(metric="acc"),
                                 dict(max_epochs=3), dict(max_rounds=-1)])
def test_bad_pool_config_is_rejected(bad):
    kw = dict(pool_size=8, rounds_every=1, max_epochs=5)
    kw.update(bad)
    with pytest.raises(LSHUsageError):
        PoolConfig(**kw)


def test_max_epochs_error_names_the_minimum():
    with pytest.raises(LSHUsageError, match="max_epochs >= 4"):
        PoolConfig(8, rounds_every=1, max_epochs=3)


def test_replays_are_idempotent_and_actions_follow_the_round():
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=2, max_epochs=9)
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, None)
    pool = ledger.pool
    assert ledger.on_boundary("c000", 2, 0.5) is None
    assert pool.action("c000", 2) == "pause" and not pool.released("c000")
    assert ledger.on_boundary("c000", 2, 0.7) is None  # replay: ignored
    assert pool.candidates["c000"].pending == [2, 0.5]
    for cid, v in (("c001", 0.1), ("c002", 0.9)):
        ledger.on_boundary(cid, 2, v)
    d = ledger.on_boundary("c003", 2, 0.2)
    assert d.removed == ["c002", "c000"]
    assert pool.action("c000", 2) == "stop" and pool.action("c001", 2) == "continue"
    assert pool.released("c001")


@pytest.mark.parametrize("hpo", HPO_METHODS)
def test_json_round_trip_and_same_decisions_after_reload(hpo, tmp_path):
    cfg = SearchLedger.pool_config_for(hpo, pool_size=8, rounds_every=1, max_epochs=5, seed=7)
    a = SearchLedger.create(cfg, hpo, DEFAULT_SPACE, tmp_path / "a")
    rng = random.Random(1)
    first = list(a.pool.active())
    for c in first:
        a.on_boundary(c.cid, 1, rng.random())
    b = SearchLedger.load(tmp_path / "a")
    assert json.dumps(b.state_dict(), sort_keys=True) == json.dumps(a.state_dict(), sort_keys=True)
    da, db = _drive(a, seed=2), _drive(b, seed=2)
    assert [x.to_dict() for x in da] == [x.to_dict() for x in db]
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize("hpo", HPO_METHODS)
def test_deterministic_given_a_seed(hpo):
    def run(seed):
        cfg = SearchLedger.pool_config_for(hpo, pool_size=8, rounds_every=1, max_epochs=5, seed=seed)
        ledger = SearchLedger.create(cfg, hpo, DEFAULT_SPACE, None)
        _drive(ledger, seed=3)
        return ledger.state_dict()["pool"]

    assert run(11) == run(11)
    if hpo != "grid":
        assert run(11)["candidates"] != run(12)["candidates"]


def test_grid_pool_is_a_subset_of_the_grid_and_never_refills():
    cfg = SearchLedger.pool_config_for("grid", pool_size=8, rounds_every=1, max_epochs=5)
    ledger = SearchLedger.create(cfg, "grid", DEFAULT_SPACE, None)
    grid = DEFAULT_SPACE.grid()
    assert all(c.config in grid for c in ledger.pool.candidates.values())
    assert all(not d.generated for d in _drive(ledger))
    with pytest.raises(LSHUsageError, match="25 exceeds"):
        SearchLedger.create(SearchLedger.pool_config_for("grid", pool_size=25, rounds_every=1, max_epochs=9),
                            "grid", DEFAULT_SPACE, None)


@pytest.mark.parametrize("hpo", ["tpe", "atpe", "bohb"])
def test_refills_are_conditioned_on_survivors(hpo):
    """Model-based refills move towards the configs with small metrics (death=SET here)."""
    cfg = SearchLedger.pool_config_for(hpo, pool_size=20, rounds_every=1, max_epochs=9, seed=0)
    ledger = SearchLedger.create(cfg, hpo, DEFAULT_SPACE, None)
    _drive(ledger, values=lambda c: 0.0 if c.config["death"] == "SET" else 1.0)
    refills = [c for c in ledger.pool.candidates.values() if c.born_round > 0]
    share = sum(c.config["death"] == "SET" for c in refills) / len(refills)
    assert share > 0.3  # uniform gives 0.25 (1/13 with this seed)


def test_existing_state_is_not_overwritten(tmp_path):
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=5)
    SearchLedger.create(cfg, "random", DEFAULT_SPACE, tmp_path)
    with pytest.raises(LSHUsageError, match="--resume"):
        SearchLedger.create(cfg, "random", DEFAULT_SPACE, tmp_path)


def test_failed_candidate_does_not_block_the_round():
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=5)
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, None)
    for cid in ("c000", "c001", "c002"):
        ledger.on_boundary(cid, 1, 0.5)
    d = ledger.on_failed("c003")
    assert d is not None and len(d.ranking) == 3


def test_atpe_crash_falls_back_to_tpe(monkeypatch):
    import hyperopt.atpe

    def boom(*a, **k):
        raise IndexError("list index out of range")  # hyperopt #565/#768

    monkeypatch.setattr(hyperopt.atpe, "suggest", boom)
    cfg = SearchLedger.pool_config_for("atpe", pool_size=8, rounds_every=1, max_epochs=5)
    ledger = SearchLedger.create(cfg, "atpe", DEFAULT_SPACE, None)
    decisions = _drive(ledger)
    assert len(decisions[0].generated) == 2


def test_rescore_sets_the_open_rounds_values_and_decide_needs_them():
    pool = CandidatePool(PoolConfig(4, rounds_every=1, max_epochs=3), DEFAULT_SPACE.grid()[:4])
    for cid in ("c000", "c001", "c002"):
        assert pool.record(cid, 1, None)  # boundary only: the value comes at the round's close
    with pytest.raises(RuntimeError, match="'c003' is not an active candidate with a boundary"):
        pool.rescore({"c003": 1.0})
    pool.record("c003", 1, 9.0)
    assert pool.ready()
    with pytest.raises(RuntimeError, match="rescore"):
        pool.decide(lambda n: [])
    pool.rescore({"c000": 0.4, "c001": 0.1, "c002": 0.3, "c003": 0.2})  # replaces the reported 9.0 too
    d = pool.decide(lambda n: [])
    assert d.ranking == [("c001", 0.1), ("c003", 0.2), ("c002", 0.3), ("c000", 0.4)]
    assert sorted(d.removed) == ["c000", "c002"] and pool.candidates["c003"].history == [0.2]
    with pytest.raises(RuntimeError, match="c001"):  # decided: no open boundary any more
        pool.rescore({"c001": 0.0})


def test_adapter_queries_of_the_ledger():
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=3, metric="loss")
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, None)
    assert ledger.metric_name == "loss" and not ledger.ranks_by_pool_fit
    with pytest.raises(LSHUsageError, match="no loss value"):
        ledger.on_boundary("c000", 1, None)
    for cid, v in (("c000", 4.0), ("c001", 1.0), ("c002", 3.0)):
        ledger.on_boundary(cid, 1, v)
    assert ledger.action("c000", 1) == "pause" and not ledger.is_released("c000")
    ledger.on_boundary("c003", 1, 2.0)
    assert not ledger.is_alive("c000") and ledger.action("c000") == "stop"
    assert ledger.is_alive("c001") and ledger.is_released("c001") and ledger.action("c001", 1) == "continue"
    assert ledger.status_counts() == {"removed": 2, "final": 2} and ledger.progress() == (1, "final")


def test_a_failed_trial_is_reissued_while_retries_last_then_dropped(tmp_path):
    """A trial Tune gives up on (its worker died while PENDING, e.g. on a lost node) comes back as a
    new trial of the same candidate, at most ``retries`` times over the search (saved state)."""
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=5)
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, tmp_path)
    issued = [ledger.next_to_issue()[0] for _ in range(4)]
    assert ledger.next_to_issue() is None
    assert ledger.on_failed(issued[1], retries=1) is None
    assert ledger.is_alive(issued[1]) and ledger.next_to_issue()[0] == issued[1]
    assert SearchLedger.load(tmp_path).meta["reissued"] == {issued[1]: 1}
    ledger.on_failed(issued[1], retries=1)                  # retries spent: dropped
    assert not ledger.is_alive(issued[1]) and ledger.next_to_issue() is None
    assert not ledger.issuing_finished()                    # the search is not done
    ledger.on_failed(issued[2])                             # retries=0: dropped at once
    assert not ledger.is_alive(issued[2])
