"""A corrupt or truncated file of each kind a search keeps: the previous good version is used, or the
run stops with one line naming the file — never a silent wrong result (Ray-free, real tiny models).

| file | outcome |
|---|---|
| candidate mirror ``candidates/<cid>/state.pt`` | Tune's (older) checkpoint is loaded; both bad: one error naming both |
| pool state / ledger ``lsh/state.json`` | ``--resume`` stops: one line naming it |
| saved spectra ``lsh/spectra/<cid>.json`` | ``--resume`` stops: one line naming it |
| reference cache ``reference_cache/<key>.npz`` | a miss: the reference is trained again (same result) |
| reference training state ``reference_cache/<key>/state.pt`` | trained again from epoch 0, bit-identical |
| Tune's searcher state | the searcher keeps the ledger it was unpickled with |
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _reliability import TOKENS, candidate, ptb_2k, search_cfg  # noqa: F401  (fixtures)
from lsh_tune.errors import LSHUsageError
from lsh_tune.storage import Storage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b"\x00garbage\xff" * 40)


def _meta() -> dict:
    return {"ls_history": [], "ls_epochs": [], "last_report": None}


@pytest.mark.parametrize("how", ["truncate", "garble"])
def test_a_damaged_mirror_falls_back_to_tunes_older_checkpoint(search_cfg, ptb_2k, tmp_path, how):
    from lsh_tune.search.candidate import candidate_dir, load_newest_state, save_state, save_trainer

    store, tune_dir = search_cfg.experiment(), Storage(tmp_path / "tune_checkpoint")
    trainer, _, _, config = candidate(search_cfg, ptb_2k)
    trainer.train_epoch()
    save_trainer(trainer, tune_dir, "state.pt", lsh=_meta())  # Tune's checkpoint: epoch 1
    epoch1 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_epoch()
    save_state(trainer, store, config["cid"], _meta())  # the mirror: epoch 2, newer
    _damage(store.local_path(f"{candidate_dir(config['cid'])}/state.pt"), how)

    fresh, _, _, _ = candidate(search_cfg, ptb_2k)
    saved = load_newest_state(fresh, [(store, candidate_dir(config["cid"])), (tune_dir, "")])
    assert saved is not None and fresh.epoch == 1
    assert all(torch.equal(v, epoch1[k]) for k, v in fresh.model.state_dict().items())

    _damage(tune_dir.local_path("state.pt"), how)
    with pytest.raises(LSHUsageError) as e:
        load_newest_state(candidate(search_cfg, ptb_2k)[0], [(store, candidate_dir(config["cid"])), (tune_dir, "")])
    assert str(store.local_path(candidate_dir(config["cid"]))) in str(e.value) and str(tune_dir.uri) in str(e.value)


def _ls_ledger(cfg):
    """A saved LS search after one candidate reported its first boundary (spectra on disk)."""
    from lsh_tune.search._ledger import SearchLedger
    from lsh_tune.search._ls_fit import PoolLSFit

    rng = np.random.default_rng(0)
    cfg.save()
    fit = PoolLSFit(rng.normal(size=(3, 8)), cfg.ls_space())
    ledger = SearchLedger.create(cfg.pool_config(), cfg.hpo, cfg.space, cfg.experiment(), ls_fit=fit)
    ledger.on_boundary("c000", 1, None, spectra={0: list(rng.normal(size=8)), 1: list(rng.normal(size=8))})
    SearchLedger.forget(cfg.experiment())
    return ledger


@pytest.mark.parametrize("rel", ["lsh/state.json", "lsh/spectra/c000.json", "lsh/reference_ls.json"])
def test_a_damaged_pool_state_or_spectra_file_stops_the_resume_naming_it(search_cfg, rel, capsys):
    from lsh_tune.cli import main
    from lsh_tune.search._ledger import SearchLedger

    _ls_ledger(search_cfg)
    exp = search_cfg.experiment()
    assert SearchLedger.load(exp).ls_fit.spectra["c000"]  # readable before the damage
    path = exp.local_path(rel)
    _damage(path, "truncate")
    before = path.read_bytes()
    assert main(["search", "--storage-path", search_cfg.storage_path, "--name", search_cfg.name, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsh-tune: error: ") and str(path) in err[0]
    assert path.read_bytes() == before  # nothing rewrote it


def test_every_file_the_ledger_reads_is_covered_above(search_cfg):
    """The parametrisation above names every file of lsh/ (a new kind of file needs its own case)."""
    _ls_ledger(search_cfg)
    lsh = search_cfg.experiment().local_path("lsh")
    kinds = {str(p.relative_to(lsh.parent)) for p in lsh.rglob("*") if p.is_file()}
    kinds = {"lsh/spectra/c000.json" if k.startswith("lsh/spectra/") else k for k in kinds}
    assert kinds <= {"lsh/search.json", "lsh/state.json", "lsh/spectra/c000.json", "lsh/reference_ls.json"}, kinds


def test_a_damaged_reference_cache_entry_is_a_miss(search_cfg, ptb_2k):
    from lsh_tune.lyapunov import ReferenceCache
    from lsh_tune.search.run.reference import prepare_reference, reference_plan

    plan = reference_plan(search_cfg, ptb_2k)
    cache = ReferenceCache(plan.cache)
    cache.save(plan.key, np.ones((2, 4)), np.ones(4), {"key": plan.key})
    assert prepare_reference(search_cfg, ptb_2k)["history"] is not None
    _damage(Path(cache.path(plan.key)), "truncate")
    assert cache.load(plan.key) is None and prepare_reference(search_cfg, ptb_2k)["history"] is None


def test_a_damaged_reference_training_state_is_trained_again_to_the_same_result(search_cfg, ptb_2k, tmp_path):
    """Stopped after epoch 1, its state damaged: the reference trains again from epoch 0, bit-identical."""
    from dataclasses import replace

    from lsh_tune.lyapunov import ReferenceCache
    from lsh_tune.search.run.reference import reference_plan, train_reference

    plan = replace(reference_plan(search_cfg, ptb_2k), epochs=2)
    clean = train_reference(replace(plan, cache=str(tmp_path / "clean")), ptb_2k)

    class Stop(Exception):
        pass

    def stop_after_first(progress):
        if progress["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train_reference(plan, ptb_2k, on_epoch=stop_after_first)
    state = next(Path(plan.cache).rglob("state.pt"))
    _damage(state, "truncate")
    again = train_reference(plan, ptb_2k)
    assert ReferenceCache(plan.cache).load(plan.key) is not None
    np.testing.assert_array_equal(again.spectra(), clean.spectra())


def test_an_unreadable_searcher_state_keeps_the_ledger(search_cfg, tmp_path):
    pytest.importorskip("ray")
    from lsh_tune.search._ledger import SearchLedger
    from lsh_tune.search.tune.adapters import LSHSearcher

    search_cfg.save()
    ledger = SearchLedger.create(search_cfg.pool_config(), "random", search_cfg.space, search_cfg.experiment())
    searcher = LSHSearcher(ledger)
    path = tmp_path / "searcher.json"
    searcher.save(str(path))
    assert json.loads(path.read_text())["ledger_directory"] == ledger.directory
    path.write_text('{"ledger_dir')
    searcher.restore(str(path))
    assert searcher.ledger is ledger
