"""Refill generators: the initial pool and the ⌊n/4⌋ new candidates of each round (Ray-free).

Every generator is deterministic given ``(seed, round)`` and keeps no state of its own: what it
knows comes from the pool's observations (one per decided round of every candidate: ``config``,
``budget`` = the candidate's own round count, ``value`` = its metric then, ``alive``), so the
pool's JSON is the whole state.

* ``grid`` — the 24 methodological variants at a fixed death rate; removal only, no refills. A
  pool smaller than the grid takes a seeded subset (in grid order).
* ``random`` — uniform samples.
* ``tpe`` / ``atpe`` — hyperopt's TPE / adaptive TPE, driven through ``hyperopt.Trials`` and
  ``Domain`` directly; each observed candidate is one finished trial with ``loss`` = its latest
  metric (non-finite → worse than every finite value).
* ``hyperband`` — uniform samples; the pool ranks them per bracket (see :mod:`._pool`).
* ``bohb`` — hpbandster's BOHB KDE over the ConfigSpace space, fed every (config, budget,
  value) of every round; also bracketed.

All generators avoid proposing a config already in the pool when the space allows it.
"""
from __future__ import annotations

import contextlib
import datetime
import math
import random
from types import SimpleNamespace
from typing import ClassVar

import numpy as np

from lsh_tune.errors import LSHUsageError, check_choice
from lsh_tune.seeds import derive_seed
from lsh_tune.space import DEFAULT_DEATH_RATE_GRID, SearchSpace

__all__ = ["HPO_METHODS", "RefillGenerator", "generator_class", "make_generator"]

HPO_METHODS = ("grid", "random", "tpe", "atpe", "bohb", "hyperband")


@contextlib.contextmanager
def _seeded_globals(seed: int):
    """Seed Python's and NumPy's global RNGs (hyperopt ATPE, hpbandster use them), then restore."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _key(config: dict) -> tuple:
    return tuple(sorted((k, round(v, 9) if isinstance(v, float) else v) for k, v in config.items()))


class RefillGenerator:
    """Base class. Subclasses implement :meth:`_propose`.

    Args:
        space: the search space.
        seed: base seed.
    """

    name: ClassVar[str] = ""
    generates: ClassVar[bool] = True
    bracketed: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = int(seed)

    def initial(self, n: int) -> list[dict]:
        """The initial pool: ``n`` distinct uniform samples when the space allows."""
        rng = random.Random(derive_seed(self.seed, self.name, "initial"))
        return self._fill([], n, rng, [])

    def refill(self, n: int, observations: list[dict], existing: list[dict], round_index: int) -> list[dict]:
        """``n`` new configs conditioned on ``observations`` (see module docstring).

        Args:
            n: how many.
            observations: the pool's observations (every round of every candidate for bohb,
                the latest per candidate otherwise).
            existing: configs already in the pool (avoided when possible).
            round_index: the round being closed (part of the seed).
        """
        if n <= 0:
            return []
        seed = derive_seed(self.seed, self.name, "refill", round_index)
        proposed = [self.space.validate(c) for c in self._propose(n, observations, seed)]
        return self._fill(proposed, n, random.Random(seed), existing)

    def _propose(self, n: int, observations: list[dict], seed: int) -> list[dict]:
        rng = random.Random(seed)
        return [self.space.sample(rng) for _ in range(n)]

    def _fill(self, proposed: list[dict], n: int, rng: random.Random, existing: list[dict]) -> list[dict]:
        """Keep proposals that are new, then top up with new uniform samples (duplicates last)."""
        seen = {_key(c) for c in existing}
        out: list[dict] = []
        for c in proposed:
            if len(out) < n and _key(c) not in seen:
                out.append(c)
                seen.add(_key(c))
        tries = 0
        while len(out) < n:
            c = self.space.sample(rng)
            tries += 1
            if _key(c) not in seen or tries > 200:
                out.append(c)
                seen.add(_key(c))
        return out


class GridGenerator(RefillGenerator):
    """The methodological grid at a fixed death rate; no refills."""

    name = "grid"
    generates = False

    def __init__(self, space: SearchSpace, seed: int = 0, *, death_rate: float = DEFAULT_DEATH_RATE_GRID) -> None:
        super().__init__(space, seed)
        self.death_rate = death_rate

    def initial(self, n: int) -> list[dict]:
        grid = self.space.grid(self.death_rate)
        if n > len(grid):
            raise LSHUsageError(f"pool={n} exceeds the grid's {len(grid)} variants; use --pool <= {len(grid)}")
        if n == len(grid):
            return grid
        keep = sorted(random.Random(derive_seed(self.seed, "grid")).sample(range(len(grid)), n))
        return [grid[i] for i in keep]

    def refill(self, n, observations, existing, round_index):  # noqa: D102 - removal only
        return []


class RandomGenerator(RefillGenerator):
    """Uniform samples."""

    name = "random"


class HyperbandGenerator(RefillGenerator):
    """Uniform samples in Hyperband brackets (the pool ranks per bracket)."""

    name = "hyperband"
    bracketed = True


def _finite_losses(values: list[float]) -> list[float]:
    finite = [v for v in values if math.isfinite(v)]
    worst = (max(finite) + 1.0) if finite else 1.0
    return [v if math.isfinite(v) else worst for v in values]


class TPEGenerator(RefillGenerator):
    """hyperopt TPE (``tpe.suggest``) over the latest metric of every observed candidate.

    Args:
        n_startup_jobs: observations below which TPE samples at random. hyperopt's default (20)
            would make TPE random for every pool under 20; the pool's first round already
            observes ``pool_size`` candidates, so the default here is 4.
    """

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int = 0, *, n_startup_jobs: int = 4) -> None:
        super().__init__(space, seed)
        self.n_startup_jobs = int(n_startup_jobs)

    def _algo(self):
        import functools

        from hyperopt import tpe
        return functools.partial(tpe.suggest, n_startup_jobs=self.n_startup_jobs)

    def _propose(self, n: int, observations: list[dict], seed: int) -> list[dict]:
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Domain, Trials

        latest: dict[str, dict] = {}
        for o in observations:
            if o["cid"] not in latest or o["budget"] >= latest[o["cid"]]["budget"]:
                latest[o["cid"]] = o
        obs = [latest[k] for k in sorted(latest)]
        if not obs:
            return super()._propose(n, observations, seed)
        domain = Domain(lambda _: 0.0, self.space.to_hyperopt())
        trials = Trials()
        t0 = datetime.datetime(2000, 1, 1)
        for tid, (o, loss) in enumerate(zip(obs, _finite_losses([o["value"] for o in obs]))):
            point = self.space.to_hyperopt_point(o["config"])
            misc = {"tid": tid, "cmd": domain.cmd, "workdir": None,
                    "idxs": {k: [tid] for k in point}, "vals": {k: [v] for k, v in point.items()}}
            doc = trials.new_trial_docs([tid], [None], [{"status": STATUS_OK, "loss": float(loss)}], [misc])[0]
            doc.update(state=JOB_STATE_DONE, book_time=t0, refresh_time=t0 + datetime.timedelta(seconds=1))
            trials.insert_trial_docs([doc])
        trials.refresh()
        out = []
        with _seeded_globals(seed):
            # One suggestion per call: ATPE (and TPE with several ids) otherwise share one draw.
            for i in range(n):
                new = self._suggest([len(obs) + i], domain, trials, derive_seed(seed, i))
                vals = new[0]["misc"]["vals"]
                out.append(self.space.from_hyperopt_point({k: v[0] for k, v in vals.items()}))
        return out


    def _suggest(self, ids, domain, trials, seed):
        return self._algo()(ids, domain, trials, seed)


class ATPEGenerator(TPEGenerator):
    """hyperopt adaptive TPE (``atpe.suggest``, needs lightgbm); only finished trials are passed.

    ATPE has known crashes with ``hp.choice`` spaces (hyperopt #565, #768: IndexError); such a
    suggestion falls back to TPE with the same seed and a warning.
    """

    name = "atpe"

    def _algo(self):
        from hyperopt import atpe
        return atpe.suggest

    def _suggest(self, ids, domain, trials, seed):
        try:
            return self._algo()(ids, domain, trials, seed)
        except (IndexError, KeyError, ValueError) as e:
            import logging

            logging.getLogger(__name__).warning("ATPE failed (%s: %s); using TPE for this refill",
                                                type(e).__name__, e)
            return super()._algo()(ids, domain, trials, seed)


class BOHBGenerator(RefillGenerator):
    """hpbandster's BOHB KDE over the ConfigSpace space; bracketed like Hyperband.

    Args:
        min_points_in_model: points needed at a budget before a KDE is built (hpbandster's
            default: dimension + 1); fewer observations fall back to uniform samples.
        top_n_percent: share of observations forming the "good" density.
    """

    name = "bohb"
    bracketed = True

    def __init__(self, space: SearchSpace, seed: int = 0, *, min_points_in_model: int | None = None,
                 top_n_percent: int = 15) -> None:
        super().__init__(space, seed)
        self.min_points_in_model = min_points_in_model
        self.top_n_percent = top_n_percent

    def _propose(self, n: int, observations: list[dict], seed: int) -> list[dict]:
        import logging

        from hpbandster.optimizers.config_generators.bohb import BOHB

        cs = self.space.to_configspace(seed=seed)
        kde = BOHB(cs, min_points_in_model=self.min_points_in_model, top_n_percent=self.top_n_percent)
        kde.logger.setLevel(logging.ERROR)
        out = []
        with _seeded_globals(seed):
            obs = sorted(observations, key=lambda o: (o["budget"], o["cid"]))
            for o, loss in zip(obs, _finite_losses([o["value"] for o in obs])):
                cfg = {k: o["config"][k] for k in self.space.names}
                job = SimpleNamespace(kwargs={"budget": float(o["budget"]), "config": cfg},
                                      result={"loss": float(loss)}, exception=None, timestamps={},
                                      id=(0, 0, len(out)))
                kde.new_result(job)
            budget = max((o["budget"] for o in obs), default=1)
            for _ in range(n):
                config, _info = kde.get_config(float(budget))
                out.append(self.space.from_configspace(config))
        return out


_GENERATORS: dict[str, type[RefillGenerator]] = {
    g.name: g for g in (GridGenerator, RandomGenerator, TPEGenerator, ATPEGenerator, BOHBGenerator,
                        HyperbandGenerator)}


def generator_class(hpo: str) -> type[RefillGenerator]:
    """The generator class named ``hpo`` (its ``generates``/``bracketed`` shape the schedule)."""
    check_choice("hpo", hpo, HPO_METHODS)
    return _GENERATORS[hpo]


def make_generator(hpo: str, space: SearchSpace, seed: int = 0, **kwargs) -> RefillGenerator:
    """The generator named ``hpo`` (one of :data:`HPO_METHODS`)."""
    return generator_class(hpo)(space, seed, **kwargs)
