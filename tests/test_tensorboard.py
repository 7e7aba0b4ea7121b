"""The experiment-level TensorBoard log of a real tiny search, read back with TensorBoard's own
``EventAccumulator`` and checked against ``results.json`` (the shared ``tiny_search`` run)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.ray


def _accumulator(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_log_matches_results(tiny_search):
    exp = tiny_search[0]
    results = {r["cid"]: r for r in json.loads((exp / "results.json").read_text())}
    rounds = json.loads((exp / "lsh" / "state.json").read_text())["pool"]["rounds"]
    tb = exp / "tensorboard"
    assert sorted(p.name for p in tb.iterdir()) == sorted([*results, "search"])
    for cid, row in results.items():
        acc = _accumulator(tb / cid)
        tags = set(acc.Tags()["scalars"])
        tag = f"ranking/{json.loads((exp / 'lsh' / 'search.json').read_text())['metric']}"
        assert {tag, "ls_distance/common_fit", "perplexity/val"} <= tags
        ranking = _scalars(acc, tag)  # the values that ranked it, at its epochs then
        assert [s for s, _ in ranking] == row["epochs_per_round"]
        assert [v for _, v in ranking] == pytest.approx(row["metric_per_round"], rel=1e-6)
        val = _scalars(acc, "perplexity/val")
        assert val[-1][0] == row.get("epoch", row["last_epoch"])
        if row["status"] == "finished":
            assert _scalars(acc, "perplexity/final_val") == [(row["epoch"], pytest.approx(row["val_ppl"]))]
            assert _scalars(acc, "perplexity/final_test")[0][1] == pytest.approx(row["test_ppl"])
            assert _scalars(acc, "hparams/final_val_ppl")[0][1] == pytest.approx(row["val_ppl"])
            assert val[-1][1] == pytest.approx(row["val_ppl"])
        else:
            assert "perplexity/final_val" not in tags
        assert _scalars(acc, "ls_distance/common_fit")[0][0] == 0  # from its spectrum at initialisation
        assert len(acc.Histograms("ls/spectrum")) == len(_scalars(acc, "ls_distance/common_fit"))
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    search = _accumulator(tb / "search")
    assert _scalars(search, "pool/size") == [(r + 1, float(len(d["ranking"]))) for r, d in enumerate(rounds)]
    assert [v for _, v in _scalars(search, "best_so_far/ranking_value")] == pytest.approx(
        [d["ranking"][0][1] for d in rounds], rel=1e-6)
    best_ppl = _scalars(search, "best_so_far/val_ppl")
    assert all(b[1] <= a[1] for a, b in zip(best_ppl, best_ppl[1:]))  # best so far never gets worse
    images = search.Images("ls_space")
    assert [i.step for i in images] == [1, 2] and all(i.width > 300 and i.height > 300 for i in images)
    ref = json.loads((exp / "best.json").read_text())["reference"]
    ref_val = _scalars(search, "reference/val_ppl")
    assert [s for s, _ in ref_val] == [1, 2] and np.isfinite(ref["val_ppl"])
    assert ref_val[-1][1] == pytest.approx(ref["val_ppl"])
    assert [s for s, _ in _scalars(search, "reference/val_loss")] == [1, 2]   # from its epoch events
    assert [s for s, _ in _scalars(search, "reference/train_loss")] == [1, 2]


def test_the_live_log_is_rebuilt_on_every_epoch_event(monkeypatch):
    """The reference's epochs and every candidate's appear as they finish, not at round close: each
    epoch event asks the background writer for a rebuild."""
    import threading

    from lsh_tune.search.views import session

    rebuilt = threading.Semaphore(0)
    monkeypatch.setattr(session, "_rebuild_tensorboard", lambda source: rebuilt.release())
    board = session._BackgroundTensorBoard("exp")
    try:
        for kind in ("reference_epoch", "epoch"):
            board({"kind": kind})
            assert rebuilt.acquire(timeout=30), kind
        board({"kind": "trial_error"})
        assert not rebuilt.acquire(timeout=0.5)
    finally:
        board.close()


def test_the_references_first_epoch_is_in_tensorboard_before_the_reference_finishes(tmp_path, monkeypatch):
    """A tiny search (its own local Ray, in this process) with a 3-epoch reference: each rebuild of the
    live log is read back with ``EventAccumulator``; one made before ``reference_done`` already holds
    the reference's first epoch (``reference/val_ppl``, ``reference/val_loss``, and its LS curve
    ``reference/ls_max``)."""
    ray = pytest.importorskip("ray")
    from lsh_tune.search.config import SearchConfig
    from lsh_tune.search.tune.tuner import run_search
    from lsh_tune.search.views import tensorboard
    from lsh_tune.search.views.history import SearchHistory

    real, seen = tensorboard.write_tensorboard, []

    def read_back(source):
        history = source if isinstance(source, SearchHistory) else SearchHistory.load(source)
        done = bool(history.events_of("reference_done"))
        where = real(history)
        acc = _accumulator(tmp_path / "live" / "tensorboard" / "search")
        tags = set(acc.Tags()["scalars"])
        seen.append((done, {t: [s for s, _ in _scalars(acc, t)] for t in ("reference/val_ppl", "reference/val_loss",
                                                                         "reference/ls_max") if t in tags}))
        return where

    monkeypatch.setattr(tensorboard, "write_tensorboard", read_back)
    cfg = SearchConfig(model="stacked_lstm", preset="tiny", corpus="ptb", max_tokens=20000, sparsity=0.67, hpo="random",
                       metric="ls", pool=3, rounds_every=1, final_k=2, max_epochs=2, reference_epochs=3, seed=0,
                       gpus_per_trial=0, cpus_per_trial=1, storage_path=str(tmp_path), name="live", verbose=0)
    temp = f"/tmp/lshlive{__import__('os').getpid()}"
    ray.init(num_cpus=2, num_gpus=0, address="local", include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        run_search(cfg)
    finally:
        ray.shutdown()
        __import__("shutil").rmtree(temp, ignore_errors=True)
    early = [tags for done, tags in seen if not done and tags]   # rebuilt before its reference_done event
    assert early and early[0]["reference/val_ppl"][0] == 1 and early[0]["reference/val_loss"][0] == 1, seen
    assert early[0]["reference/ls_max"][0] == 1, seen          # its LS curve too, before it is done
    assert any(done for done, _ in seen)                         # and again once it was done
    # its LS curve is the spectra the search ranks against: ls_max at epoch e is the largest finite
    # exponent of the cached reference's spectrum e (the same float64 numbers, written as float32 by
    # TensorBoard: relative 1e-6 covers float32's 6e-8 rounding with room)
    history = SearchHistory.load(tmp_path / "live")
    ref = dict(zip(history.reference_epochs(), history.ls_fit.reference))
    curve = _scalars(_accumulator(tmp_path / "live" / "tensorboard" / "search"), "reference/ls_max")
    assert [s for s, _ in curve] == [1, 2, 3]
    for epoch, value in curve:
        spectrum = np.asarray(ref[epoch], dtype=np.float64)
        assert value == pytest.approx(spectrum[np.isfinite(spectrum)].max(), rel=1e-6)
