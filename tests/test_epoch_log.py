"""The epoch log is every trained epoch, even when a trial died between saving an epoch's state and
logging it: the record travels in the state and a restarted trial adds it when it is missing."""
from __future__ import annotations

from lsh_tune.search.candidate import log_epoch, read_epoch_log
from lsh_tune.storage import Storage


def test_a_saved_but_unlogged_epoch_is_logged_once_on_restart(tmp_path):
    """A restarted trial logs the last epoch of the state it loaded again: once if the first attempt
    never happened, still once if it did (the record's name is its end time, cid and epoch)."""
    store = Storage(str(tmp_path))
    log_epoch(store, {"cid": "c000", "epoch": 1, "start": 1.0, "time": 2.0})
    lost = {"cid": "c000", "epoch": 2, "start": 3.0, "time": 4.0}      # saved with the state, never logged
    log_epoch(store, lost)                                              # the restart
    log_epoch(store, lost)                                              # a second restart adds nothing
    log_epoch(store, {"cid": "c000", "epoch": 1, "start": 1.0, "time": 2.0})  # logged already: nothing
    assert [(r["cid"], r["epoch"]) for r in read_epoch_log(store)] == [("c000", 1), ("c000", 2)]
    # the first attempt's record (with what was timed after the state was saved) is kept by a restart
    logged = {"cid": "c000", "epoch": 3, "start": 5.0, "time": 6.0, "save_s": 0.25}
    log_epoch(store, logged)
    log_epoch(store, {k: v for k, v in logged.items() if k != "save_s"}, if_missing=True)  # as in the state
    assert read_epoch_log(store)[-1] == logged


def test_a_resume_keeps_the_address_it_is_given_even_the_saved_one(tiny_search):
    """``--resume --address local`` of a search saved with ``address='local'`` stays local: it must not
    become "no address" (which joins a cluster that ``ray start`` left running on this machine)."""
    from lsh_tune.search.run.preflight import resume_config

    exp = tiny_search[0]
    cfg, applied = resume_config(str(exp.parent), exp.name, {"address": "local"})
    assert cfg.address == "local" and applied == []
    cfg, _ = resume_config(str(exp.parent), exp.name, {})
    assert cfg.address is None                       # not given: resolved afresh, as a new search's
