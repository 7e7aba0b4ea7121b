"""Pool-wide LS ranking: each round's values are distances in one PCA fitted on the whole pool."""
import numpy as np
import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import ls_distances
from lsh_tune.search import SearchLedger
from lsh_tune.search._ls_fit import LSSpace, PoolLSFit
from lsh_tune.space import DEFAULT_SPACE

N = 12
RNG = np.random.default_rng(3)
REFERENCE = np.sort(RNG.normal(-1.0, 0.5, size=(3, N)), axis=1)[:, ::-1]  # 3 epochs of a dense reference


def _spectrum(cid: str, epoch: int) -> list[float]:
    rng = np.random.default_rng([int(cid[1:]), epoch])
    s = REFERENCE[-1] + rng.normal(0.0, 0.3 + 0.1 * int(cid[1:]), size=N)
    return sorted(s.tolist(), reverse=True)


def _ledger(directory=None, pool=8):
    cfg = SearchLedger.pool_config_for("random", pool_size=pool, rounds_every=1, max_epochs=6, seed=0, metric="ls")
    fit = PoolLSFit(REFERENCE, LSSpace("pca", "l2"))
    return SearchLedger.create(cfg, "random", DEFAULT_SPACE, directory, ls_fit=fit)


def _own_distance(cid, history):
    return ls_distances(REFERENCE, {cid: np.asarray(history)})[0][cid]


def _report_round(ledger, reported: dict | None = None):
    decision = None
    for c in list(ledger.pool.active()):
        epoch = len(c.history) + 1
        history = [_spectrum(c.cid, e) for e in c.epochs + [epoch]]
        own = _own_distance(c.cid, history)
        if reported is not None:
            reported[c.cid] = own
        decision = ledger.on_boundary(c.cid, epoch, own, {"ls_distance_own_fit": own}, _spectrum(c.cid, epoch)) or decision
    return decision


def test_round_ranks_by_distances_in_one_fit_over_the_pool():
    ledger = _ledger()
    for _ in range(2):  # round 2 ranks multi-epoch histories
        act = {c.cid: c.epochs + [len(c.history) + 1] for c in ledger.pool.active()}
        expected, _ = ls_distances(REFERENCE, {cid: np.asarray([_spectrum(cid, e) for e in eps])
                                               for cid, eps in act.items()})
        reported: dict = {}
        decision = _report_round(ledger, reported)
        assert dict(decision.ranking) == pytest.approx(expected)
        # the pool-wide values differ from what the trials reported (each fitted with its own history)
        assert max(abs(expected[c] - reported[c]) for c in act) > 1e-3
        worst = sorted(act, key=lambda c: expected[c])[len(act) - len(decision.removed):]
        assert sorted(decision.removed) == sorted(worst)
        for cid in act:
            assert ledger.pool.candidates[cid].history[-1] == pytest.approx(expected[cid])


def test_spectra_persist_and_a_reloaded_ledger_decides_the_same(tmp_path):
    a = _ledger(tmp_path / "a")
    first = list(a.pool.active())
    for c in first[:5]:  # half a round, then the driver "restarts"
        a.on_boundary(c.cid, 1, 0.0, None, _spectrum(c.cid, 1))
    b = SearchLedger.load(tmp_path / "a")
    assert b.ls_fit is not None and sorted(b.ls_fit.spectra) == sorted(c.cid for c in first[:5])
    assert np.allclose(b.ls_fit.reference, REFERENCE)
    for ledger in (a, b):
        for c in first[5:]:
            ledger.on_boundary(c.cid, 1, 0.0, None, _spectrum(c.cid, 1))
    assert a.state_dict() == b.state_dict() and a.pool.rounds


def test_missing_or_wrong_spectrum_is_a_clear_error():
    ledger = _ledger()
    cid = ledger.pool.active()[0].cid
    with pytest.raises(LSHUsageError, match=f"{cid}.*no LS"):
        ledger.on_boundary(cid, 1, 0.5, None, None)
    with pytest.raises(LSHUsageError, match="5 exponents; the reference has 12"):
        ledger.on_boundary(cid, 1, 0.5, None, [0.0] * 5)
    cfg = SearchLedger.pool_config_for("random", pool_size=8, rounds_every=1, max_epochs=6, metric="loss")
    with pytest.raises(LSHUsageError, match="metric='loss'"):
        SearchLedger.create(cfg, "random", DEFAULT_SPACE, None, ls_fit=PoolLSFit(REFERENCE))


def test_diverged_candidate_ranks_last_and_in_memory_ledger_pickles():
    import pickle

    ledger = pickle.loads(pickle.dumps(_ledger()))
    act = ledger.pool.active()
    decision = None
    for c in act:
        s = [float("nan")] * N if c.cid == act[0].cid else _spectrum(c.cid, 1)
        decision = ledger.on_boundary(c.cid, 1, 0.0, None, s) or decision
    assert decision.ranking[-1] == (act[0].cid, float("inf")) and act[0].cid in decision.removed
