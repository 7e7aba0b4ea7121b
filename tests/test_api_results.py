"""Results as data: ``SearchResult.dataframe()``/``candidates()`` and your own Tune callbacks
(``LSHTuner(..., callbacks=[...])``, ``LSHTuner.restore(path, callbacks=[...])``).

One real tiny search on PTB (the first 2,000 tokens of each split; pool 3 → 2 → 1 finalist, E = 1,
ranked by validation loss, so no dense reference) is shared by the tests of this module; the last
test restores it, which trains nothing more.
"""
from __future__ import annotations

import collections
import json
import math
import os
import pickle
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

import lsh_tune
from lsh_tune.errors import LSHUsageError
from lsh_tune.search import FINISHED, REMOVED, SearchLedger
from lsh_tune.search.candidate import read_epoch_log
from lsh_tune.search.keys import CID_KEY, REPLAY_KEY
from lsh_tune.search.layout import EPOCH_LOG
from lsh_tune.search.views.epochs import CONFIG_PREFIX
from lsh_tune.storage import Storage

ray = pytest.importorskip("ray")
from ray.tune import Callback  # noqa: E402

from lsh_tune.search.tune._user_callbacks import run_callbacks  # noqa: E402

#: pool 3, E = 1, final_k 1: round 0 ranks 3 at epoch 1 and removes 1; round 1 ranks 2 at epoch 2,
#: removes 1 and ends halving; the finalist trains to epoch 3. Rows: 3 + 2 + 1 = 6 candidate epochs.
SEARCH = dict(model="stacked_lstm", preset="tiny", max_tokens=2000, hpo="random", metric="loss", pool=3, final_k=1,
              rounds_every=1, max_epochs=3, gpus_per_trial=0, cpus_per_trial=1, seed=0, verbose=0)
EPOCHS = 6
#: The trainer computes ``val_ppl = exp(val_loss)`` in float64 and JSON keeps a float exactly (repr
#: round-trips), so the two agree to the last bit here; 1e-9 relative only leaves room for another
#: libm's ``exp`` (correctly rounded within 1 ulp ≈ 2.2e-16 relative).
PPL_REL = 1e-9


class Recorder(Callback):
    """A Tune callback of the user's: every result it is given, its setups and ends, a state to save.

    It holds a lock, so it does not pickle: the search must not need to pickle it (Tune pickles its
    ``RunConfig`` into ``tuner.pkl``).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: list[dict] = []
        self.setups = self.ends = 0
        self.restored: dict | None = None

    def setup(self, **info) -> None:
        self.setups += 1

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        with self.lock:
            self.results.append(dict(result))

    def on_experiment_end(self, trials, **info) -> None:
        self.ends += 1

    def get_state(self) -> dict:
        return {"results": len(self.results)}

    def set_state(self, state: dict) -> None:
        self.restored = dict(state)

    def epochs(self) -> list[dict]:
        """The results of trained candidate epochs (a restored trial's replay of its boundary excluded)."""
        return [r for r in self.results if not r.get(REPLAY_KEY)]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, address="local", include_dashboard=False, _temp_dir=f"/tmp/lshres{os.getpid()}",
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def searched(local_ray, tmp_path_factory):
    """(result, recorder, its DataFrame) of the shared tiny search."""
    recorder = Recorder()
    tuner = lsh_tune.LSHTuner(storage_path=str(tmp_path_factory.mktemp("results")), name="tiny",
                              callbacks=[recorder], **SEARCH)
    result = tuner.fit()
    return result, recorder, result.dataframe()


@pytest.mark.parametrize("callbacks,match", [
    (Recorder(), "is not a list"),                         # one callback, not in a list
    ([Recorder], r"callbacks\[0\].*a class, not an instance"),
    ([Recorder(), print], r"callbacks\[1\].*of type builtin_function_or_method"),
])
def test_callbacks_that_are_not_a_list_of_tune_callbacks_are_refused_before_ray(tmp_path, callbacks, match):
    with pytest.raises(LSHUsageError, match=match):
        lsh_tune.LSHTuner(storage_path=str(tmp_path), callbacks=callbacks, **SEARCH)
    with pytest.raises(LSHUsageError, match=match):
        lsh_tune.LSHTuner.restore(tmp_path / "nothing", callbacks=callbacks)  # checked before the path


def test_the_users_callbacks_pickle_as_those_of_the_run_being_set_up():
    """What Tune's ``tuner.pkl`` holds of them: a reference, which a restore turns into its own callbacks."""
    first, second = Recorder(), Recorder()
    with run_callbacks([first]) as run:
        saved = pickle.dumps(run)  # a Recorder holds a lock: pickling it would raise
        assert pickle.loads(saved) is run and run.callbacks == (first,)
    assert pickle.loads(saved).callbacks == ()  # unpickled outside a search: calls nothing
    with run_callbacks([second]) as again:
        assert pickle.loads(saved) is again and again.callbacks == (second,)


@pytest.mark.ray
def test_tune_calls_the_users_callback_once_per_trained_candidate_epoch(searched):
    result, recorder, frame = searched
    assert recorder.setups == 1 and recorder.ends == 1
    seen = collections.Counter((r[CID_KEY], int(r["epoch"])) for r in recorder.epochs())
    rows = collections.Counter(zip(frame["cid"], frame["epoch"]))
    assert seen == rows and sum(seen.values()) == EPOCHS == len(frame)  # each trained epoch: one result, one row
    by_key = frame.set_index(["cid", "epoch"])
    for r in recorder.epochs():
        row = by_key.loc[(r[CID_KEY], int(r["epoch"]))]
        assert (row["hostname"], row["node_ip"], row["trial_id"]) == (r["hostname"], r["node_ip"], r["trial_id"])
        assert (row["train_loss"], row["val_loss"], row["density"]) == (r["train_loss"], r["val_loss"], r["density"])
    # the other results: a paused candidate's boundary, reported again when it resumed from it, so
    # only at an epoch a round ranked and kept it (a removed candidate never resumes)
    replayed = {(r[CID_KEY], int(r["epoch"])) for r in recorder.results if r.get(REPLAY_KEY)}
    survived = frame[frame["decision"].isin(["kept", "finalist"])]
    assert replayed <= set(zip(survived["cid"], survived["epoch"]))


@pytest.mark.ray
def test_dataframe_has_each_logged_candidate_epoch_once_with_its_metrics(searched):
    result, _, frame = searched
    log = {(r["cid"], r["epoch"]): r for r in read_epoch_log(result.experiment_dir)}
    assert len(log) == len(read_epoch_log(result.experiment_dir))  # no epoch was trained twice
    assert list(zip(frame["cid"], frame["epoch"])) == sorted(log)
    pool = SearchLedger.load(result.experiment_dir).pool
    names = list(pool.candidates["c000"].config)
    assert [c for c in frame.columns if c.startswith(CONFIG_PREFIX)] == [CONFIG_PREFIX + n for n in names]
    for row in frame.to_dict("records"):
        rec = log[(row["cid"], row["epoch"])]
        assert {n: row[CONFIG_PREFIX + n] for n in names} == pool.candidates[row["cid"]].config
        assert (row["start_time"], row["end_time"], row["node_id"]) == (rec["start"], rec["time"], rec["node_id"])
        assert row["start_time"] < row["end_time"] and row["epoch_time_s"] > 0 and math.isnan(row["ls_time_s"])
        assert row["val_ppl"] == pytest.approx(math.exp(row["val_loss"]), rel=PPL_REL)
        assert row["train_ppl"] == pytest.approx(math.exp(row["train_loss"]), rel=PPL_REL)
    tested = frame[frame["test_loss"].notna()]
    assert list(tested["cid"]) == [result.best["cid"]] and list(tested["epoch"]) == [SEARCH["max_epochs"]]
    assert tested["test_ppl"].iloc[0] == pytest.approx(math.exp(tested["test_loss"].iloc[0]), rel=PPL_REL)


@pytest.mark.ray
def test_dataframe_marks_every_round_decision_at_the_epoch_it_was_ranked(searched):
    result, _, frame = searched
    ranked = frame[frame["round"].notna()]
    assert len(ranked) == sum(len(r["ranking"]) for r in result.rounds) == 3 + 2
    for decided in result.rounds:
        mine = ranked[ranked["round"] == decided["round"]].sort_values("rank")
        assert list(zip(mine["cid"], mine["ranking_value"])) == [(c, v) for c, v in decided["ranking"]]
        assert list(mine["rank"]) == list(range(1, len(decided["ranking"]) + 1))
        assert list(mine["ranking_value"]) == list(mine["val_loss"])  # metric "loss": the epoch's validation loss
        removed = set(mine["cid"][mine["decision"] == "removed"])
        assert removed == set(decided["removed"])
        assert set(mine["decision"]) - {"removed"} == ({"finalist"} if decided["done"] else {"kept"})
    for cid, rows in frame.groupby("cid"):
        last = rows.iloc[-1]
        assert list(rows["epoch"]) == list(range(1, len(rows) + 1))
        if last["status"] == REMOVED:  # its last epoch is the one the removing round ranked
            assert last["decision"] == "removed" and last["round"] == last["removed_round"]
        else:
            assert last["status"] == FINISHED and cid == result.best["cid"] and pd.isna(last["removed_round"])
            assert (last["epoch"], last["val_ppl"], last["test_ppl"]) == \
                (result.best["epoch"], result.best["val_ppl"], result.best["test_ppl"])


@pytest.mark.ray
def test_an_epoch_log_without_metrics_takes_them_from_the_events(searched, tmp_path):
    """An experiment whose epoch log predates the metrics in its records (copied, its records cut back)."""
    result, _, frame = searched
    old = tmp_path / "old"
    shutil.copytree(result.experiment_dir, old)
    kept = ("cid", "epoch", "start", "time", "pid", "trial_id", "gpu_ids", "node_id")  # the records' keys before
    for path in (old / EPOCH_LOG).iterdir():
        record = json.loads(path.read_text())
        path.write_text(json.dumps({k: record[k] for k in kept}))
    again = lsh_tune.SearchResult.load(old).dataframe()
    from_events = ["cid", "epoch", "val_loss", "val_ppl", "density", "epoch_time_s", "round", "decision", "node_id"]
    pd.testing.assert_frame_equal(again[from_events], frame[from_events])
    for lost in ("train_loss", "train_ppl", "test_loss", "lr", "hostname", "node_ip"):
        assert again[lost].isna().all(), lost


@pytest.mark.ray
def test_candidates_carry_their_rows_of_the_dataframe(searched):
    result, _, frame = searched
    candidates = result.candidates()
    assert [c.cid for c in candidates] == sorted(set(frame["cid"])) == ["c000", "c001", "c002"]
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    assert [row for c in candidates for row in c.history] == rows
    for c in candidates:
        assert c.epochs == len(c.history) and {n: c.history[0][CONFIG_PREFIX + n] for n in c.config} == c.config
        assert c.status == c.history[-1]["status"] and c.born_round == 0
        if c.cid == result.best["cid"]:
            assert c.final["val_ppl"] == result.best["val_ppl"] and c.removed_round is None
        else:
            assert c.final is None and c.removed_round == c.history[-1]["round"]


@pytest.mark.ray
def test_dataframe_reads_the_experiment_on_an_object_store(searched, s3):
    result, _, frame = searched
    local = Path(result.experiment_dir)
    bucket = Storage(s3.uri("copied/tiny"))
    for path in local.rglob("*"):
        if path.is_file():
            bucket.write_bytes(path.relative_to(local).as_posix(), path.read_bytes())
    remote = lsh_tune.SearchResult.load(bucket.uri)
    assert remote.experiment_dir == bucket.uri and remote.best == result.best
    pd.testing.assert_frame_equal(remote.dataframe(), frame)
    assert remote.candidates() == result.candidates()


@pytest.mark.ray
def test_restore_calls_the_callbacks_given_to_it_with_the_state_saved_before(searched):
    result, first, frame = searched
    seen_before = len(first.results)
    again = Recorder()
    restored = lsh_tune.LSHTuner.restore(result.experiment_dir, verbose=0, callbacks=[again]).fit()
    assert restored.best == result.best
    assert again.setups == 1 and again.ends == 1 and again.results == []  # nothing left to train
    assert again.restored == {"results": seen_before}  # Tune's saved callback state, by position
    assert len(first.results) == seen_before and first.setups == 1  # the first run's callback is not called
    pd.testing.assert_frame_equal(restored.dataframe(), frame)


def test_mlflow_and_wandb_loggers_are_tune_callbacks_of_this_ray():
    """README: MLflow and W&B go in through ``callbacks=`` (the packages themselves are not needed to import these)."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback

    assert issubclass(MLflowLoggerCallback, Callback) and issubclass(WandbLoggerCallback, Callback)
