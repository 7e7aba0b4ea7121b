"""A diverging candidate (an absurd learning rate: NaN loss and NaN spectrum) is ranked last, removed,
marked ``diverged`` in the results, and the search goes on (real training on a PTB slice; Ray-free).

The candidate trainable's work is done here with the same pieces (``build_candidate``, the
trainer, ``lyapunov_spectrum`` under the evaluation weights) and handed to the ledger as the
scheduler would; the ledger, the pool-wide LS fit and the results table are the real ones.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from _reliability import ptb_2k, search_cfg  # noqa: F401  (fixtures)

ABSURD_LR = 1e12
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spectrum(trainer, corpus, ls_config) -> list[float]:
    from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum, validation_tokens

    cfg = LSConfig(**ls_config)
    with trainer.evaluation_weights():
        return lyapunov_spectrum(trainer.model, validation_tokens(corpus, cfg.k, cfg.total_steps), cfg).tolist()


def _first_epoch(settings, config, corpus) -> dict:
    """Train a candidate one epoch: its boundary report (val_loss, spectra at epochs 0 and 1)."""
    from lsh_tune.search.candidate import build_candidate

    trainer, _ = build_candidate(settings, config, corpus)
    ls0 = _spectrum(trainer, corpus, settings.ls_config)
    m = trainer.train_epoch()
    return {"val_loss": m["val_loss"], "val_ppl": m["val_ppl"], "train_loss": m["train_loss"],
            "spectra": {0: ls0, 1: _spectrum(trainer, corpus, settings.ls_config)}}


@pytest.fixture(scope="module")
def reports(tmp_path_factory, ptb_2k):
    """One real first epoch per candidate of a pool of 4 (final_k 1: round 1 removes 2, refills 1); c002
    with an absurd learning rate."""
    from lsh_tune.search.candidate import trial_settings
    from lsh_tune.search.config import SearchConfig

    cfg = SearchConfig(hpo="random", metric="ls", pool=4, final_k=1, rounds_every=1, max_epochs=4, gpus_per_trial=0,
                       max_tokens=2000, storage_path=str(tmp_path_factory.mktemp("div")), name="exp",
                       ls_k=1, ls_steps=10)
    settings = trial_settings(cfg, cfg.space.names)
    absurd = replace(settings, train_spec={**settings.train_spec, "lr": ABSURD_LR})
    # c002 redistributes by weight magnitude: its NaN weights give NaN shares (which once crashed the trial)
    grid = cfg.space.grid()
    configs = {f"c{i:03d}": {"cid": f"c{i:03d}", **grid[g]} for i, g in enumerate((1, 4, 0, 7))}
    out = {cid: _first_epoch(absurd if cid == "c002" else settings, c, ptb_2k) for cid, c in configs.items()}
    reference = np.asarray([out["c000"]["spectra"][0], out["c000"]["spectra"][1]]) * 1.05  # a dense-like LS
    return cfg, out, reference, configs


def test_an_absurd_learning_rate_really_diverges(reports):
    _, out, _, _ = reports
    assert not math.isfinite(out["c002"]["val_loss"]) and np.isnan(out["c002"]["spectra"][1]).all()
    assert all(math.isfinite(out[c]["val_loss"]) for c in ("c000", "c001", "c003"))


@pytest.mark.parametrize("metric", ["ls", "loss"])
def test_the_diverged_candidate_is_ranked_last_removed_and_marked(reports, metric):
    from lsh_tune.search._ledger import SearchLedger

    cfg, out, reference, configs = reports
    cfg = replace(cfg, metric=metric, name=f"exp-{metric}")
    cfg.save()
    fit = cfg.signal().make_fit(reference)
    ledger = SearchLedger.create(cfg.pool_config(), cfg.hpo, cfg.space, cfg.experiment(), ls_fit=fit)
    for cid, config in configs.items():  # the pool holds the configurations that were trained
        ledger.pool.candidates[cid].config = {k: v for k, v in config.items() if k != "cid"}
    decision = None
    for cid, r in out.items():
        info = {k: r[k] for k in ("val_loss", "val_ppl")}
        if fit is not None:
            decision = ledger.on_boundary(cid, 1, None, info, spectra=r["spectra"])
        else:
            decision = ledger.on_boundary(cid, 1, r["val_loss"], info)
    assert decision is not None and decision.ranking[-1][0] == "c002" and not math.isfinite(decision.ranking[-1][1])
    assert "c002" in decision.removed and decision.generated and not decision.done  # the search goes on
    assert all(math.isfinite(v) for c, v in decision.ranking if c != "c002")
    rows = {r["cid"]: r for r in SearchLedger.load(cfg.experiment()).pool.table()}
    assert rows["c002"]["diverged"] and rows["c002"]["status"] == "removed"
    assert not any(rows[c]["diverged"] for c in rows if c != "c002")
