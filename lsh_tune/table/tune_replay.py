"""ASHA and HyperBand on validation loss replayed against a table with Ray Tune's own schedulers (a Ray adapter).

:func:`replay_asha` drives :class:`ray.tune.schedulers.AsyncHyperBandScheduler` and
:func:`replay_hyperband` :class:`ray.tune.schedulers.HyperBandScheduler` — their real
``on_trial_add``/``on_trial_result``/``on_trial_complete``/``choose_trial_to_run`` decisions
(pauses included) — with the table's epochs in
simulated time: ``gpus`` workers, trials started in order as workers free up (Tune's default
random search: ``budget`` configurations sampled uniformly (tabulated categoricals) with the seed, each answered by the
nearest tabulated one), one result per epoch (``training_iteration`` = epoch, ``val_loss``),
after the logged seconds of that epoch; a ``STOP`` ends the trial as the Tune controller does
(``on_trial_complete`` with its last result; a paused trial resumes at its next epoch, as from
its checkpoint). No LS is computed. The answer at any moment is the
best validation perplexity among trials that reached the last epoch.
"""
from __future__ import annotations

import heapq
import random

import numpy as np

from lsh_tune.errors import check_int
from lsh_tune.seeds import derive_seed
from lsh_tune.table._table import Table

__all__ = ["replay_asha", "replay_hyperband"]


def _configs(table: Table, budget: int, seed: int, name: str) -> tuple[list[str], int]:
    """``budget`` sampled configurations as table keys and how many were substituted."""
    space = table.tabulated_space()
    rng = random.Random(derive_seed(seed, name))
    keys, substituted = [], 0
    for _ in range(budget):
        key, exact = table.nearest(space.sample(rng))
        keys.append(key)
        substituted += not exact
    return keys, substituted


class _Trial:
    """What Ray's schedulers read of a trial: id, status, ``is_saving``, its last result (hashable)."""

    def __init__(self, trial_id: str, key: str, seed: int) -> None:
        from ray.tune.experiment import Trial

        self.trial_id, self.key, self.seed = trial_id, key, seed
        self.status, self.is_saving, self.last_result, self.epoch = Trial.PENDING, False, None, 0


class _Controller:
    """The controller calls Ray's schedulers make: ``get_trials`` and ``stop_trial``, which notifies
    the scheduler as Tune's does (PENDING/PAUSED: ``on_trial_remove``; RUNNING: ``on_trial_complete``)."""

    def __init__(self, scheduler, trials: list[_Trial]) -> None:
        self.scheduler, self.trials = scheduler, trials

    def get_trials(self) -> list[_Trial]:
        return list(self.trials)

    def stop_trial(self, trial: _Trial) -> None:
        from ray.tune.experiment import Trial

        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        elif trial.status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        trial.status = Trial.TERMINATED


def _simulate(table: Table, scheduler, trials: list[_Trial], gpus: int) -> tuple[list, float, int]:
    """Run ``trials`` under ``scheduler`` on ``gpus`` workers in simulated time: each epoch's result
    (``training_iteration``, ``val_loss``) arrives after its logged seconds; CONTINUE trains on, PAUSE
    frees the worker, STOP ends the trial; free workers take ``scheduler.choose_trial_to_run``.

    Returns ``(finished [(time, trial)] of trials that reached the last epoch, end time, epochs run)``.
    """
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    epochs = table.settings.epochs
    ctrl = _Controller(scheduler, trials)
    for trial in trials:
        scheduler.on_trial_add(ctrl, trial)
    events, finished, now, n_epochs, order = [], [], 0.0, 0, 0

    def push(trial: _Trial) -> None:
        nonlocal order
        order += 1
        seconds = table.epoch_time(trial.key, trial.seed, trial.epoch + 1, with_ls=False)
        heapq.heappush(events, (now + seconds, order, trial))

    def fill() -> None:
        while len(events) < gpus and (trial := scheduler.choose_trial_to_run(ctrl)) is not None:
            trial.status = Trial.RUNNING
            push(trial)

    fill()
    while events:
        now, _, trial = heapq.heappop(events)
        trial.epoch += 1
        n_epochs += 1
        rec = table.run(trial.key, trial.seed)["epochs"][trial.epoch]
        trial.last_result = {"training_iteration": trial.epoch, "val_loss": rec["val_loss"]}
        decision = scheduler.on_trial_result(ctrl, trial, trial.last_result)
        if trial.epoch == epochs:
            finished.append((now, trial))
        if decision == TrialScheduler.STOP or trial.epoch == epochs:
            ctrl.stop_trial(trial)
        elif decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED
        else:  # CONTINUE: it keeps its worker
            push(trial)
        fill()
    return finished, now, n_epochs


def _trials(table: Table, budget: int, seed: int, name: str) -> tuple[list[_Trial], int]:
    keys, substituted = _configs(table, budget, seed, name)
    seeds = table.settings.seeds
    return [_Trial(f"t{i:03d}", k, seeds[derive_seed(seed, f"t{i:03d}") % len(seeds)])
            for i, k in enumerate(keys)], substituted


def replay_asha(table: Table, *, budget: int, seed: int = 0, gpus: int = 1, grace_period: int = 1,
                reduction_factor: float = 2, brackets: int = 1) -> dict:
    """Replay ASHA (Ray's ``AsyncHyperBandScheduler``, ``max_t`` = the table's epochs) on ``val_loss``.

    Returns:
        ``{"chosen": {key, seed, val_ppl, test_ppl, rank}, "trajectory": [{time_s, key, val_ppl,
        test_ppl}], "sim_time_s", "candidate_epochs", "substituted", "settings"}``.
    """
    from ray.tune.schedulers import AsyncHyperBandScheduler

    check_int("budget", budget, 1)
    check_int("gpus", gpus, 1)
    sched = AsyncHyperBandScheduler(time_attr="training_iteration", metric="val_loss", mode="min",
                                    max_t=table.settings.epochs, grace_period=grace_period,
                                    reduction_factor=reduction_factor, brackets=brackets)
    trials, substituted = _trials(table, budget, seed, "asha")
    np_state = np.random.get_state()
    np.random.seed(derive_seed(seed, "asha-brackets"))  # on_trial_add draws the bracket from numpy's RNG
    try:
        finished, end, n_epochs = _simulate(table, sched, trials, gpus)
    finally:
        np.random.set_state(np_state)
    return _summary(table, finished, end, n_epochs, substituted,
                    {"scheduler": "asha", "budget": budget, "seed": seed, "gpus": gpus, "grace_period": grace_period,
                     "reduction_factor": reduction_factor, "brackets": brackets})


def replay_hyperband(table: Table, *, budget: int, seed: int = 0, gpus: int = 1, reduction_factor: float = 3) -> dict:
    """Replay synchronous HyperBand (Ray's ``HyperBandScheduler``, ``max_t`` = the table's epochs) on
    ``val_loss``; same result as :func:`replay_asha`. Paused trials resume at their next epoch."""
    from ray.tune.schedulers import HyperBandScheduler

    check_int("budget", budget, 1)
    check_int("gpus", gpus, 1)
    sched = HyperBandScheduler(time_attr="training_iteration", metric="val_loss", mode="min",
                               max_t=table.settings.epochs, reduction_factor=reduction_factor)
    trials, substituted = _trials(table, budget, seed, "hyperband")
    finished, end, n_epochs = _simulate(table, sched, trials, gpus)
    return _summary(table, finished, end, n_epochs, substituted,
                    {"scheduler": "hyperband", "budget": budget, "seed": seed, "gpus": gpus,
                     "reduction_factor": reduction_factor})


def _summary(table: Table, finished: list, end: float, n_epochs: int, substituted: int, settings: dict) -> dict:
    trajectory, best = [], None
    for t, trial in finished:
        final = table.run(trial.key, trial.seed)["final"]
        if best is None or final["val_ppl"] < best[1]["val_ppl"]:
            best = (trial, final)
        trajectory.append({"time_s": t, "key": best[0].key, "val_ppl": best[1]["val_ppl"],
                           "test_ppl": best[1]["test_ppl"]})
    trial, final = best
    chosen = {"key": trial.key, "seed": trial.seed, "val_ppl": final["val_ppl"], "test_ppl": final["test_ppl"],
              "rank": table.rank(trial.key)}
    return {"chosen": chosen, "trajectory": trajectory, "sim_time_s": end, "candidate_epochs": n_epochs,
            "substituted": substituted, "settings": settings}
