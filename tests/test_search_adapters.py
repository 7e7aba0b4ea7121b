"""LSHScheduler/LSHSearcher decisions against a fake controller (Ray imported, not started)."""
from __future__ import annotations

import pickle

import pytest

pytest.importorskip("ray")
from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.schedulers import TrialScheduler  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from lsh_tune.search import SearchLedger  # noqa: E402
from lsh_tune.search.tune.adapters import LSHScheduler, LSHSearcher  # noqa: E402
from lsh_tune.search.keys import BOUNDARY_KEY, FINAL_KEY  # noqa: E402
from lsh_tune.space import DEFAULT_SPACE  # noqa: E402


class FakeTrial:
    def __init__(self, trial_id, config):
        self.trial_id, self.config, self.status = trial_id, config, Trial.PENDING


class FakeController:
    def __init__(self):
        self.trials, self.stopped = [], []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        self.stopped.append(trial.config["cid"])
        trial.status = Trial.TERMINATED


@pytest.fixture
def setup(tmp_path):
    cfg = SearchLedger.pool_config_for("random", pool_size=4, rounds_every=1, max_epochs=3, metric="loss")
    ledger = SearchLedger.create(cfg, "random", DEFAULT_SPACE, tmp_path)
    sched, searcher, tc = LSHScheduler(ledger), LSHSearcher(ledger), FakeController()
    trials = {}
    while True:
        cfg_ = searcher.suggest(f"t{len(trials)}")
        if cfg_ is None:
            break
        t = FakeTrial(f"t{len(trials)}", cfg_)
        tc.trials.append(t)
        sched.on_trial_add(tc, t)
        trials[cfg_["cid"]] = t
    return ledger, sched, searcher, tc, trials


def _boundary(cid, epoch, loss):
    return {"cid": cid, "epoch": epoch, "val_loss": loss, BOUNDARY_KEY: True}


def test_round_barrier_pause_then_stop_and_release(setup):
    ledger, sched, searcher, tc, trials = setup
    assert len(trials) == 4 and searcher.suggest("x") is None
    losses = {"c000": 5.0, "c001": 1.0, "c002": 4.0, "c003": 2.0}
    for cid in ("c000", "c001", "c002"):
        trials[cid].status = Trial.RUNNING
        assert sched.on_trial_result(tc, trials[cid], _boundary(cid, 1, losses[cid])) == TrialScheduler.PAUSE
        trials[cid].status = Trial.PAUSED
    assert sched.choose_trial_to_run(tc) is trials["c003"]  # the pending one, not a held one
    trials["c003"].status = Trial.RUNNING
    decision = sched.on_trial_result(tc, trials["c003"], _boundary("c003", 1, 2.0))
    assert decision == TrialScheduler.CONTINUE
    assert sorted(tc.stopped) == ["c000", "c002"]
    assert sched.choose_trial_to_run(tc) is trials["c001"]
    # replay of the decided boundary after an unpause: continue, metric unchanged
    assert sched.on_trial_result(tc, trials["c001"], _boundary("c001", 1, 1.0)) == TrialScheduler.CONTINUE
    # the final phase keeps the searcher open (a finalist whose trial Tune gives up on is re-issued);
    # it finishes once the search is done
    assert ledger.pool.phase == "final" and searcher.suggest("y") is None
    for cid in ("c001", "c003"):
        ledger.on_final(cid, {"val_ppl": 100.0, "test_ppl": 100.0})
    assert ledger.pool.phase == "done" and searcher.suggest("z") == Searcher.FINISHED


def test_missing_metric_and_missing_cid_raise(setup):
    _, sched, _, tc, trials = setup
    with pytest.raises(ValueError, match="val_loss"):
        sched.on_trial_result(tc, trials["c000"], {"cid": "c000", "epoch": 1, BOUNDARY_KEY: True})
    with pytest.raises(ValueError, match="cid"):
        sched.on_trial_add(tc, FakeTrial("z", {}))


def test_final_result_finishes_the_candidate(setup):
    ledger, sched, _, tc, trials = setup
    for cid, v in (("c000", 5.0), ("c001", 1.0), ("c002", 4.0), ("c003", 2.0)):
        sched.on_trial_result(tc, trials[cid], _boundary(cid, 1, v))
    final = {**_boundary("c001", 3, 0.5), FINAL_KEY: True, "val_ppl": 1.6, "test_ppl": 1.7}
    sched.on_trial_result(tc, trials["c001"], final)
    assert ledger.pool.candidates["c001"].final["test_ppl"] == 1.7


def test_pickled_adapters_share_one_ledger_reloaded_from_disk(setup):
    ledger, sched, searcher, _, _ = setup
    s2, q2 = pickle.loads(pickle.dumps((sched, searcher)))
    assert s2.ledger is q2.ledger is ledger
    SearchLedger.forget(ledger.directory)
    s3 = pickle.loads(pickle.dumps(sched))
    assert s3.ledger is not ledger and s3.ledger.state_dict() == ledger.state_dict()


def test_tune_calls_on_trial_error_for_retried_failures_while_still_running():
    """``tune_will_retry`` relies on how Ray 2.60 orders its failure handling; this breaks if Ray
    changes it (then a retried trial would also be re-issued by the ledger, training it twice)."""
    import inspect

    from ray.tune.execution.tune_controller import TuneController

    from lsh_tune.search.tune.adapters import tune_will_retry

    requeue = inspect.getsource(TuneController._requeue_trial)
    assert requeue.index("on_trial_error") < requeue.index("Trial.PENDING")
    failure = inspect.getsource(TuneController._process_trial_failure)
    assert "trial.status == Trial.RUNNING and trial.should_recover()" in failure
    assert failure.index("_try_recover") < failure.index("on_trial_error")

    class T:
        def __init__(self, status, recover):
            self.status, self._recover = status, recover

        def should_recover(self):
            return self._recover

    assert tune_will_retry(T(Trial.RUNNING, True))
    assert not tune_will_retry(T(Trial.RUNNING, False)) and not tune_will_retry(T(Trial.PENDING, True))
