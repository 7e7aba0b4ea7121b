"""The LS history as the paper defines it (§3): one spectrum per epoch from epoch 0, all of them in
the round's pool-wide fit — through the built-in trainable's epoch code, the scheduler's boundary
handling and the ledger (no Ray trial needed), and through a replay of a table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsh_tune.data import load_corpus
from lsh_tune.lyapunov import LSConfig, validation_tokens
from lsh_tune.models import get_preset
from lsh_tune.search import make_ledger
from lsh_tune.search._ls_fit import LSSpace
from lsh_tune.search.candidate import TrialSettings, build_candidate
from lsh_tune.space import DEFAULT_SPACE

TABLE = Path(__file__).resolve().parents[1] / "tables" / "tiny"


@pytest.fixture
def fits(monkeypatch):
    """Every LS-space fit made: a list of {id: number of spectra in its history}."""
    calls: list[dict] = []
    original = LSSpace.distances

    def spy(self, reference_history, histories, **kwargs):
        calls.append({k: int(np.asarray(v).shape[0]) for k, v in histories.items()})
        return original(self, reference_history, histories, **kwargs)

    monkeypatch.setattr(LSSpace, "distances", spy)
    return calls


def test_epoch0_and_every_epoch_reach_the_rounds_pool_fit(fits):
    pytest.importorskip("ray")
    from lsh_tune.search.tune.adapters import LSHScheduler
    from lsh_tune.search.tune.trainable import _append_spectrum, _train_epoch

    E = 2
    corpus = load_corpus("ptb", max_tokens=2500)
    model_spec, train_spec = get_preset("stacked_lstm", "tiny")
    ls_cfg = LSConfig(k=1, steps=8, warmup=2)
    settings = TrialSettings(model_spec=model_spec.to_dict(), train_spec=train_spec.to_dict(), sparsity=0.67,
                             rounds_every=E, max_epochs=3, hp_names=DEFAULT_SPACE.names, ls_config=ls_cfg.to_dict())
    n = sum(model_spec.hidden)
    reference_history = np.linspace(-1.0, 0.0, 4 * n).reshape(4, n)
    reference = {"history": reference_history, "tokens": validation_tokens(corpus, 1, ls_cfg.total_steps),
                 "plan": None}
    ledger = make_ledger(pool_size=2, rounds_every=E, max_epochs=3, hpo="grid", final_k=1,
                         reference_history=reference_history)
    scheduler = LSHScheduler(ledger)
    cids = [c.cid for c in ledger.pool.active()]
    for cid in cids:
        trainer, hook = build_candidate(settings, {"cid": cid, **ledger.pool.candidates[cid].config}, corpus)
        meta = {"ls_history": [], "ls_epochs": [], "last_report": None}
        _append_spectrum(trainer, settings, meta, reference, 0)  # what the trainable does before training
        for _ in range(E):
            result = _train_epoch(trainer, hook, settings, cid, meta, reference, device="cpu", gpu_ids="")
        assert result["lsh_boundary"] and result["ls_first_epoch"] == 0 and len(result["ls_epochs"]) == E + 1
        scheduler._on_boundary(cid, result["epoch"], result)
    assert ledger.pool.round == 1  # the round closed on the pool-wide fit
    pool_fit = fits[-1]
    assert pool_fit == {cid: E + 1 for cid in cids}  # points per candidate = its epochs + 1
    assert sorted(ledger.ls_fit.spectra[cids[0]]) == [0, 1, 2]


def test_boundary_only_spectra_still_rank_as_before(fits):
    n = 3
    ledger = make_ledger(pool_size=2, rounds_every=2, max_epochs=3, hpo="grid", final_k=1,
                         reference_history=np.zeros((2, n)))
    for i, c in enumerate(ledger.pool.active()):
        ledger.on_boundary(c.cid, 2, None, spectrum=[0.1 * i, -1.0, -2.0])
    assert ledger.pool.round == 1 and fits[-1] == {"c000": 1, "c001": 1}


@pytest.mark.skipif(not (TABLE / "manifest.json").exists(), reason="committed tiny table missing")
def test_a_replayed_round_fits_epochs_plus_one_points(fits):
    from lsh_tune.table import ReplaySettings, Table, replay_search

    table = Table(TABLE)
    out = replay_search(table, ReplaySettings(hpo="grid", metric="ls", pool=len(table.keys), rounds_every=1))
    first_round = next(f for f in fits if len(f) == len(table.keys))
    assert set(first_round.values()) == {2}  # epochs 0 and 1
    second = next(f for f in fits if len(f) == len(table.keys) - len(table.keys) // 2)
    assert set(second.values()) == {3}
    boundary = replay_search(table, ReplaySettings(hpo="grid", metric="ls", pool=len(table.keys), rounds_every=1,
                                                   ls_history="boundary"))
    assert fits[-1] and set(fits[-1].values()) == {2}  # boundaries 1 and 2 only, no epoch 0
    assert out["rounds"][0]["ranking"] != boundary["rounds"][0]["ranking"]
