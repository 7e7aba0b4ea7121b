"""The dense reference (Ray-free part): resumable per-epoch training, one LS per epoch from epoch 0,
its cache key, and a dense checkpoint used instead of training (real PTB slice, tiny preset)."""
from __future__ import annotations

import numpy as np
import pytest

from lsh_tune.search.config import SearchConfig
from lsh_tune.search.run.reference import (prepare_reference, read_reference_log, reference_plan, search_corpus,
                                       train_reference)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EPOCHS = 3


def _cfg(tmp_path, name: str, **kw) -> SearchConfig:
    kw = {"model": "stacked_lstm", "preset": "tiny", "max_tokens": 2000, "reference_epochs": EPOCHS, "pool": 4,
          "rounds_every": 1, "final_k": 2, "max_epochs": 2, "gpus_per_trial": 0, **kw}
    return SearchConfig(storage_path=str(tmp_path / name), **kw)


class Killed(Exception):
    pass


def test_a_killed_reference_resumes_where_it_stopped_and_matches_an_uninterrupted_one(tmp_path):
    cfg = _cfg(tmp_path, "whole")
    corpus = search_corpus(cfg)
    whole = train_reference(reference_plan(cfg, corpus), corpus)
    assert whole.history.shape == (EPOCHS + 1, 128)            # epoch 0 (initialisation) .. EPOCHS
    np.testing.assert_array_equal(whole.final, whole.history[-1])
    assert whole.meta["val_ppl"] > 1 and whole.meta["test_ppl"] > 1 and whole.meta["epochs"] == EPOCHS

    cut = _cfg(tmp_path, "killed")
    plan = reference_plan(cut, corpus)
    seen = []

    def kill_after_two(progress):
        seen.append(progress["epoch"])
        if progress["epoch"] == 2:
            raise Killed  # after epoch 2 was saved and logged, before epoch 3

    with pytest.raises(Killed):
        train_reference(plan, corpus, tags={"run": "first"}, on_epoch=kill_after_two)
    assert prepare_reference(cut, corpus)["history"] is None   # not cached: rounds still wait for it
    resumed = train_reference(plan, corpus, tags={"run": "second"}, on_epoch=lambda p: seen.append(p["epoch"]))
    assert seen == [1, 2, 3]
    log = read_reference_log(plan)
    assert [(r["epoch"], r["run"]) for r in log] == [(1, "first"), (2, "first"), (3, "second")]
    np.testing.assert_array_equal(resumed.history, whole.history)  # bit-identical on CPU
    assert resumed.meta["val_ppl"] == whole.meta["val_ppl"] and resumed.meta["test_ppl"] == whole.meta["test_ppl"]

    again = train_reference(plan, corpus, on_epoch=lambda p: pytest.fail("a cached reference trains nothing"))
    np.testing.assert_array_equal(again.history, whole.history)
    assert len(read_reference_log(plan)) == EPOCHS
    ready = prepare_reference(cut, corpus)
    np.testing.assert_array_equal(ready["history"], whole.history)
    assert ready["meta"]["cached"] and ready["tokens"].shape == (45, 2)

    # The trained reference is a dense checkpoint: used as --reference-checkpoint it gives the same LS.
    ckpt = _cfg(tmp_path, "killed", reference_checkpoint=resumed.meta["checkpoint"])
    from_ckpt = train_reference(reference_plan(ckpt, corpus), corpus)
    assert from_ckpt.history.shape == (0, 128)
    np.testing.assert_array_equal(from_ckpt.final, whole.history[-1])
    assert prepare_reference(ckpt, corpus)["history"].shape == (1, 128)
    assert from_ckpt.meta["test_ppl"] == pytest.approx(whole.meta["test_ppl"])


def test_the_key_changes_with_everything_the_reference_depends_on(tmp_path):
    base = _cfg(tmp_path, "k")
    corpus = search_corpus(base)
    key = reference_plan(base, corpus).key
    assert reference_plan(_cfg(tmp_path, "other-dir"), corpus).key == key   # not the storage location
    variants = [dict(seed=1), dict(reference_epochs=EPOCHS + 1), dict(ls_k=3), dict(ls_top=8), dict(ls_qr="joint"),
                dict(lr=1.0), dict(model="rhn"), dict(reference_checkpoint="/x/dense.pt")]
    keys = {reference_plan(_cfg(tmp_path, "k", **v), corpus).key for v in variants}
    sliced = _cfg(tmp_path, "k", max_tokens=3000)
    keys.add(reference_plan(sliced, search_corpus(sliced)).key)
    assert key not in keys and len(keys) == len(variants) + 1


def test_a_checkpoint_of_another_model_is_refused_naming_both(tmp_path):
    from lsh_tune.errors import LSHUsageError

    rhn = _cfg(tmp_path, "rhn", model="rhn")
    corpus = search_corpus(rhn)
    trained = train_reference(reference_plan(rhn, corpus), corpus)
    lstm = _cfg(tmp_path, "rhn", reference_checkpoint=trained.meta["checkpoint"])
    with pytest.raises(LSHUsageError, match="reference_checkpoint=.*rhn.*stacked_lstm"):
        train_reference(reference_plan(lstm, corpus), corpus)


def test_the_ledger_issues_the_reference_first_and_ranks_only_once_it_is_known(tmp_path):
    """Round 0 stays open until the reference arrives (also across a reload); the reference trial is
    re-issued when it fails, until its retries are spent."""
    from lsh_tune.lyapunov import ReferenceCache
    from lsh_tune.search import SearchLedger
    from lsh_tune.search._ls_fit import PoolLSFit
    from lsh_tune.search.keys import REFERENCE_CID
    from lsh_tune.space import DEFAULT_SPACE

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(3, 6))
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=3, seed=0, metric="ls")
    source = {"cache": str(tmp_path / "cache"), "key": "k"}
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, tmp_path / "exp", ls_fit=PoolLSFit(None),
                                 reference_source=source)
    assert ledger.next_to_issue() == (REFERENCE_CID, {}) and ledger.is_alive(REFERENCE_CID)
    assert ledger.action(REFERENCE_CID) == "continue" and ledger.is_released(REFERENCE_CID)
    cids = [ledger.next_to_issue()[0] for _ in range(4)]
    for cid in cids:
        assert ledger.on_boundary(cid, 1, None, {}, rng.normal(size=6).tolist()) is None
    assert ledger.pool.rounds == [] and all(ledger.action(c, 1) == "pause" for c in cids)
    assert ledger.load_reference() is None                       # its trial has not cached it yet

    SearchLedger.forget(tmp_path / "exp")
    again = SearchLedger.open(tmp_path / "exp")                  # a resumed driver still waits
    assert again.needs_reference and again.pool.rounds == []
    assert again.on_failed(REFERENCE_CID, retries=1) is None     # re-issued once ...
    assert again.next_to_issue() == (REFERENCE_CID, {})
    with pytest.raises(RuntimeError, match="dense reference's trial failed 2 times"):
        again.on_failed(REFERENCE_CID, retries=1)                # ... then the search cannot go on

    ReferenceCache(source["cache"]).save("k", reference, reference[-1])
    decision = again.load_reference()
    assert decision is not None and len(decision.ranking) == 4 and not again.is_alive(REFERENCE_CID)
    np.testing.assert_array_equal(SearchLedger.load(tmp_path / "exp").ls_fit.reference, reference)
