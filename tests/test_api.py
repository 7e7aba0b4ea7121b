"""The public API: helpers for a trainable of your own, ``LSHTuner``/``SearchResult``, and
``docs/examples/own_trainable.py`` (a GRU of its own under LSHScheduler/LSHSearcher on a local Ray)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import lsh_tune
from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import fill_neg_inf, ls_distances, spectrum_metrics
from lsh_tune.search import FINISHED, SearchLedger, candidate_metrics, is_boundary, make_ledger, replay_metrics
from lsh_tune.search.keys import BOUNDARY_KEY, CID_KEY, FINAL_KEY, LS_KEY, OWN_FIT_DISTANCE_KEY, REPLAY_KEY
from lsh_tune.space import DEFAULT_SPACE

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "own_trainable.py"
RNG = np.random.default_rng(0)
REFERENCE = -np.sort(RNG.random((3, 6)), axis=1)  # (epochs, N) spectra, descending


def _schedule(metric: str = "loss", **kw):
    """Pool 4, E = 2, max_epochs 5: boundaries at epochs 2, 4 and 5."""
    return make_ledger(pool_size=4, rounds_every=2, max_epochs=5, hpo="random", metric=metric, **kw).pool.config


def test_spectrum_metrics_carry_the_search_keys_and_the_distance_of_the_last_spectrum():
    history = -np.sort(RNG.random((2, 6)), axis=1)
    raw = spectrum_metrics(history, REFERENCE, embedding="raw")
    assert {LS_KEY, OWN_FIT_DISTANCE_KEY} <= set(raw) and raw[LS_KEY] == history[-1].tolist()
    filled = fill_neg_inf(np.vstack([REFERENCE, history]))  # the fit's exponents floored at its 5th percentile
    assert raw["ls_distance_own_fit"] == pytest.approx(float(np.linalg.norm(filled[-1] - filled[len(REFERENCE) - 1])))
    assert raw["ls_n"] == 6 and raw["ls_max"] == pytest.approx(history[-1].max())
    pca = spectrum_metrics(history, REFERENCE)
    assert pca["ls_distance_own_fit"] == pytest.approx(ls_distances(REFERENCE, {"x": history})[0]["x"])
    broken = history.copy()
    broken[-1, 0], broken[-1, -1] = np.nan, -np.inf
    bad = spectrum_metrics(broken, REFERENCE)
    assert bad["ls_distance_own_fit"] == math.inf and bad["ls_nan"] == 1 and bad["ls_neg_inf"] == 1
    assert bad[LS_KEY][-1] == -math.inf  # kept as reported
    with pytest.raises(LSHUsageError, match="different lengths"):
        spectrum_metrics(history[:, :4], REFERENCE)


def test_candidate_metrics_mark_boundaries_rounds_and_the_final_epoch():
    schedule = _schedule()
    assert [is_boundary(schedule, e) for e in range(1, 6)] == [False, True, False, True, True]
    plain = candidate_metrics(schedule, "c001", 1, val_loss=5.0, density=0.33)
    assert plain == {CID_KEY: "c001", "epoch": 1, "val_loss": 5.0, "val_ppl": pytest.approx(math.exp(5.0)),
                     BOUNDARY_KEY: False, FINAL_KEY: False, REPLAY_KEY: False, "density": 0.33}
    second = candidate_metrics(schedule, "c001", 4, val_loss=4.0)
    assert second[BOUNDARY_KEY] and second["round"] == 2 and not second[FINAL_KEY]
    last = candidate_metrics(schedule, "c001", 5, val_loss=3.9, test_loss=4.1)
    assert last[BOUNDARY_KEY] and last[FINAL_KEY] and last["round"] == 3
    assert last["test_ppl"] == pytest.approx(math.exp(4.1))
    replayed = replay_metrics(last)
    assert replayed[REPLAY_KEY] and {k: v for k, v in replayed.items() if k != REPLAY_KEY} == \
        {k: v for k, v in last.items() if k != REPLAY_KEY}


@pytest.mark.parametrize("epoch,kwargs,match", [
    (2, {}, "spectrum_metrics"),                                   # an LS boundary without the spectrum
    (2, {"ls": {"ls": [0.0]}}, "ls_distance_own_fit"),
    (5, {"ls": {"ls": [0.0], "ls_distance_own_fit": 0.1}}, "test_loss"),  # the last epoch without a test loss
    (6, {}, "max_epochs=5"),
    (0, {}, "epoch=0"),
    (1, {"val_ppl": 3.0}, "val_ppl"),                             # an extra metric replacing a contract key
])
def test_candidate_metrics_refuse_reports_the_scheduler_cannot_use(epoch, kwargs, match):
    with pytest.raises(LSHUsageError, match=match):
        candidate_metrics(_schedule("ls"), "c000", epoch, val_loss=5.0, **kwargs)


def test_only_a_boundary_is_replayed_and_make_ledger_checks_its_inputs(tmp_path):
    with pytest.raises(LSHUsageError, match="round-boundary"):
        replay_metrics(candidate_metrics(_schedule(), "c000", 1, val_loss=5.0))
    with pytest.raises(LSHUsageError, match="metric='loss' ranks by validation loss .* and needs no reference"):
        _schedule("loss", reference_history=REFERENCE)
    with pytest.raises(LSHUsageError, match="max_epochs"):
        make_ledger(pool_size=8, rounds_every=1, max_epochs=2)
    ledger = make_ledger(pool_size=4, rounds_every=1, max_epochs=3, directory=tmp_path, reference_history=REFERENCE)
    assert ledger.ls_fit is not None and (tmp_path / "lsh" / "state.json").is_file()
    with pytest.raises(LSHUsageError, match="exists"):
        make_ledger(pool_size=4, rounds_every=1, max_epochs=3, directory=tmp_path)


class _Trial:
    def __init__(self, config: dict) -> None:
        self.trial_id, self.config, self.status = config[CID_KEY], config, "RUNNING"


class _Controller:
    def __init__(self) -> None:
        self.trials: list[_Trial] = []
        self.stopped: list[str] = []

    def get_trials(self) -> list[_Trial]:
        return self.trials

    def stop_trial(self, trial: _Trial) -> None:
        self.stopped.append(trial.config[CID_KEY])


def test_reports_built_by_the_helpers_drive_the_scheduler_and_rank_by_the_reported_spectra():
    pytest.importorskip("ray")
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from lsh_tune.search import LSHScheduler, LSHSearcher

    ledger = make_ledger(pool_size=4, rounds_every=1, max_epochs=2, hpo="random", reference_history=REFERENCE)
    scheduler, searcher, controller = LSHScheduler(ledger), LSHSearcher(ledger), _Controller()
    while (config := searcher.suggest("t")) is not None:
        controller.trials.append(_Trial(config))
        scheduler.on_trial_add(controller, controller.trials[-1])
    spectra = {t.config[CID_KEY]: REFERENCE[-1] + RNG.normal(0, 0.1, 6) for t in controller.trials}
    decisions = {}
    for trial in controller.trials:
        cid = trial.config[CID_KEY]
        ls = spectrum_metrics([spectra[cid]], REFERENCE)
        metrics = candidate_metrics(ledger.pool.config, cid, 1, val_loss=5.0, ls=ls)
        decisions[cid] = scheduler.on_trial_result(controller, trial, metrics)
        trial.status = Trial.PAUSED if decisions[cid] == TrialScheduler.PAUSE else trial.status
    (decided,) = ledger.pool.rounds
    expected, _ = ls_distances(REFERENCE, {cid: [s] for cid, s in spectra.items()})  # one fit over the pool
    assert dict(decided["ranking"]) == pytest.approx(expected)
    farthest = sorted(expected, key=expected.get)[2:]
    stopped = set(controller.stopped) | {cid for cid, d in decisions.items() if d == TrialScheduler.STOP}
    assert sorted(decided["removed"]) == sorted(farthest) == sorted(stopped)


def _summary(tmp_path: Path) -> dict:
    best = {CID_KEY: "c001", "config": {"death": "SET"}, "val_ppl": 120.0, "test_ppl": 118.0, "density": 0.33}
    return {"experiment_dir": str(tmp_path), "hpo": "tpe", "metric": "ls", "phase": "done", "candidates": 4,
            "rounds": [{"round": 0, "ranking": [["c001", 0.1], ["c000", 0.2]], "removed": ["c000"],
                        "generated": [], "done": True}], "best": best, "reference": {"val_ppl": 100.0}}


def test_search_result_reads_best_json_and_names_the_outputs(tmp_path):
    with pytest.raises(LSHUsageError, match="best.json"):
        lsh_tune.SearchResult.load(tmp_path)
    (tmp_path / "best.json").write_text(json.dumps(_summary(tmp_path)))
    result = lsh_tune.SearchResult.load(tmp_path)
    assert result == lsh_tune.SearchResult.from_summary(_summary(tmp_path))
    assert result.best["cid"] == "c001" and result.best_config == {"death": "SET"}
    assert result.rounds[0]["ranking"] == [("c001", 0.1), ("c000", 0.2)] and result.reference == {"val_ppl": 100.0}
    assert result.best_model == tmp_path / "best_model.pt" and result.results_csv == tmp_path / "results.csv"


def test_lsh_tuner_checks_its_settings_before_ray(tmp_path):
    with pytest.raises(LSHUsageError, match="hpo='smac'"):
        lsh_tune.LSHTuner(hpo="smac", storage_path=str(tmp_path))
    base = lsh_tune.SearchConfig(hpo="random", pool=4, rounds_every=1, max_epochs=4, storage_path=str(tmp_path))
    assert lsh_tune.LSHTuner(base, name="other").config.name == "other"
    assert not lsh_tune.LSHTuner.can_restore(tmp_path / "lsh")
    with pytest.raises(LSHUsageError, match="nothing to resume"):
        lsh_tune.LSHTuner.restore(tmp_path / "lsh")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, address="local", include_dashboard=False, _temp_dir=f"/tmp/lshapi{os.getpid()}",
             log_to_driver=False)
    yield
    ray.shutdown()


def _reported_spectra(experiment: Path) -> dict[str, dict[int, list[float]]]:
    """cid -> epoch -> the spectrum its trial reported at that boundary (Tune's result.json files)."""
    spectra: dict[str, dict[int, list[float]]] = {}
    for path in experiment.glob("*/result.json"):
        for row in map(json.loads, path.read_text().splitlines()):
            if row.get(BOUNDARY_KEY):
                spectra.setdefault(row[CID_KEY], {})[int(row["epoch"])] = row[LS_KEY]
    return spectra


@pytest.mark.ray
def test_own_trainable_example_ranks_its_gru_pool_by_the_reported_spectra(local_ray, tmp_path):
    spec = importlib.util.spec_from_file_location("own_trainable", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    summary = example.main(str(tmp_path), name="own")
    pool = SearchLedger.load(summary["experiment_dir"]).pool
    assert summary["plan"] == [(4, 2, 1), (3, 1, 0), (2, 1, 0)]  # pool 4, E = 1, one finalist
    assert [(len(r["ranking"]), len(r["removed"]), len(r["generated"])) for r in summary["rounds"]] == summary["plan"]
    best = summary["best"]
    finished = [c.cid for c in pool.candidates.values() if c.status == FINISHED]
    assert finished == [best["cid"]] and len(pool.candidates) == 5
    assert DEFAULT_SPACE.validate(best["config"]) == best["config"]
    assert best["epoch"] == example.MAX_EPOCHS and best["density"] == pytest.approx(1 - example.SPARSITY, abs=1e-4)
    assert best["val_ppl"] < 10_000  # better than a uniform guess over PTB's 10,000 words
    reported, reference = _reported_spectra(Path(summary["experiment_dir"])), np.asarray(summary["reference_history"])
    for i, decided in enumerate(summary["rounds"]):
        histories = {}
        for cid, _ in decided["ranking"]:
            own_round = sum(cid in dict(r["ranking"]) for r in summary["rounds"][:i])
            epoch = pool.candidates[cid].epochs[own_round]
            histories[cid] = [reported[cid][e] for e in sorted(reported[cid]) if e <= epoch]
        expected, _ = ls_distances(reference, histories)
        values = dict(decided["ranking"])
        assert values == pytest.approx(expected, rel=1e-6)
        assert [v for _, v in decided["ranking"]] == sorted(values.values())
        worst = [cid for cid, _ in decided["ranking"][len(values) - len(decided["removed"]):]]
        assert sorted(decided["removed"]) == sorted(worst)


@pytest.mark.ray
def test_lsh_tuner_fits_restores_and_loads_the_same_result(local_ray, tmp_path):
    tuner = lsh_tune.LSHTuner(model="stacked_lstm", preset="tiny", max_tokens=2000, hpo="random", metric="loss",
                              pool=2, final_k=1, rounds_every=1, max_epochs=2, gpus_per_trial=0, cpus_per_trial=1,
                              storage_path=str(tmp_path), name="api", verbose=0)
    result = tuner.fit()
    assert result.experiment_dir == tmp_path / "api" and len(result.rounds) == 1  # final_k < pool: one selection
    assert result.best["cid"] in ("c000", "c001") and result.best_model.is_file() and result.results_csv.is_file()
    assert lsh_tune.SearchResult.load(result.experiment_dir) == result
    assert lsh_tune.LSHTuner.can_restore(result.experiment_dir)
    again = lsh_tune.LSHTuner.restore(result.experiment_dir, verbose=0).fit()
    assert again.best == result.best
