"""ASHA on validation loss replayed against a table with Ray Tune's own scheduler (a Ray adapter).

:func:`replay_asha` drives :class:`ray.tune.schedulers.AsyncHyperBandScheduler` — its real
``on_trial_add``/``on_trial_result``/``on_trial_complete`` decisions — with the table's epochs in
simulated time: ``gpus`` workers, trials started in order as workers free up (Tune's default
random search: ``budget`` configurations sampled uniformly (tabulated categoricals) with the seed, each answered by the
nearest tabulated one), one result per epoch (``training_iteration`` = epoch, ``val_loss``),
after the logged seconds of that epoch; a ``STOP`` ends the trial as the Tune controller does
(``on_trial_complete`` with its last result). No LS is computed. The answer at any moment is the
best validation perplexity among trials that reached the last epoch.
"""
from __future__ import annotations

import heapq
import random
from types import SimpleNamespace

import numpy as np

from lsh_tune.errors import check_int
from lsh_tune.seeds import derive_seed
from lsh_tune.table._table import Table

__all__ = ["replay_asha"]


def _configs(table: Table, budget: int, seed: int) -> tuple[list[str], int]:
    """``budget`` sampled configurations as table keys and how many were substituted."""
    space = table.tabulated_space()
    rng = random.Random(derive_seed(seed, "asha"))
    keys, substituted = [], 0
    for _ in range(budget):
        key, exact = table.nearest(space.sample(rng))
        keys.append(key)
        substituted += not exact
    return keys, substituted


def replay_asha(table: Table, *, budget: int, seed: int = 0, gpus: int = 1, grace_period: int = 1,
                reduction_factor: float = 2, brackets: int = 1) -> dict:
    """Replay ASHA (Ray's ``AsyncHyperBandScheduler``, ``max_t`` = the table's epochs) on ``val_loss``.

    Returns:
        ``{"chosen": {key, seed, val_ppl, test_ppl, rank}, "trajectory": [{time_s, key, val_ppl,
        test_ppl}], "sim_time_s", "candidate_epochs", "substituted", "settings"}``.
    """
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    check_int("budget", budget, 1)
    check_int("gpus", gpus, 1)
    epochs = table.settings.epochs
    sched = AsyncHyperBandScheduler(time_attr="training_iteration", metric="val_loss", mode="min", max_t=epochs,
                                    grace_period=grace_period, reduction_factor=reduction_factor, brackets=brackets)
    keys, substituted = _configs(table, budget, seed)
    seeds = table.settings.seeds
    trials = [SimpleNamespace(trial_id=f"t{i:03d}", key=k, seed=seeds[derive_seed(seed, f"t{i:03d}") % len(seeds)])
              for i, k in enumerate(keys)]
    np_state = np.random.get_state()
    np.random.seed(derive_seed(seed, "asha-brackets"))  # on_trial_add draws the bracket from numpy's RNG
    try:
        events, queue, finished, n_epochs = [], list(trials), [], 0

        def start(t_now: float) -> None:
            trial = queue.pop(0)
            sched.on_trial_add(None, trial)
            heapq.heappush(events, (t_now + table.epoch_time(trial.key, trial.seed, 1, with_ls=False),
                                    trial.trial_id, trial, 1))

        for _ in range(min(gpus, len(queue))):
            start(0.0)
        while events:
            now, _, trial, epoch = heapq.heappop(events)
            n_epochs += 1
            rec = table.run(trial.key, trial.seed)["epochs"][epoch]
            result = {"training_iteration": epoch, "val_loss": rec["val_loss"]}
            decision = sched.on_trial_result(None, trial, result)
            if decision == TrialScheduler.STOP or epoch == epochs:
                sched.on_trial_complete(None, trial, result)
                if epoch == epochs:
                    finished.append((now, trial))
                if queue:
                    start(now)
            else:
                heapq.heappush(events, (now + table.epoch_time(trial.key, trial.seed, epoch + 1, with_ls=False),
                                        trial.trial_id, trial, epoch + 1))
    finally:
        np.random.set_state(np_state)
    return _summary(table, finished, now, n_epochs, substituted,
                    {"budget": budget, "seed": seed, "gpus": gpus, "grace_period": grace_period,
                     "reduction_factor": reduction_factor, "brackets": brackets})


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
