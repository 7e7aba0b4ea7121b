"""The declarative hyperpruning search space (paper §4 "Effectiveness").

One definition, :class:`SearchSpace`, produces every representation the search needs:

* a hyperopt space (:meth:`SearchSpace.to_hyperopt`) for TPE/ATPE,
* a ConfigSpace space (:meth:`SearchSpace.to_configspace`) for BOHB's KDE,
* the grid of methodological variants at a fixed death rate (:meth:`SearchSpace.grid`),
* seeded uniform samples (:meth:`SearchSpace.sample`), and
* validation of a config dict (:meth:`SearchSpace.validate`) that raises
  :class:`~lsh_tune.errors.LSHUsageError` naming the key, the value and what is allowed.

Methodological hyperparameters (the paper's 2 × 4 × 3 = 24 variants): ``sparse_init``,
``death``, ``redistribution``; ``growth`` is fixed to ``random`` (a one-choice categorical, so
it takes part in the grid and the samplers without changing their size). Non-methodological:
``death_rate`` in [0.4, 0.9].

``death_rate`` is quantised to steps of 0.1 by default, as in the authors' public code
(``death_rate_step=0.1``: values 0.4, 0.5, …, 0.9); pass ``death_rate_step=None`` for the
continuous range the paper's text describes. The target sparsity is not part of the space: it is
a fixed input of the search.

Extending the space happens here and only here, e.g. searching growth modes too::

    >>> space = DEFAULT_SPACE.with_choices(growth=("random", "momentum", "gradient"))
    >>> len(space.grid())
    72
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from lsh_tune.errors import LSHUsageError, check_choice, check_range

__all__ = ["SearchSpace", "DEFAULT_SPACE", "METHODOLOGICAL", "DEFAULT_DEATH_RATE_GRID"]

#: The methodological hyperparameters and the paper's choices (order is the grid order).
METHODOLOGICAL: dict[str, tuple[str, ...]] = {
    "sparse_init": ("uniform", "ER"),
    "death": ("magnitude", "SET", "threshold", "global_magnitude"),
    "redistribution": ("magnitude", "nonzeros", "none"),
    "growth": ("random",),
}
#: Death rate of the grid search (paper §4 "LS-based vs. loss-based": GS fixes it to 0.8).
DEFAULT_DEATH_RATE_GRID = 0.8


def _frozen_choices(choices: Mapping[str, tuple[str, ...]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((k, tuple(v)) for k, v in choices.items())


@dataclass(frozen=True)
class SearchSpace:
    """Categorical choices plus the continuous (or stepped) ``death_rate``.

    Args:
        choices: ordered ``(name, allowed values)`` pairs of the categorical hyperparameters.
        death_rate_range: closed interval ``[low, high]`` of the death rate (paper: [0.4, 0.9]).
        death_rate_step: quantisation step of the death rate (authors' code: 0.1); ``None`` keeps
            it continuous.

    Raises:
        LSHUsageError: empty choices, duplicate values, or a bad death-rate range/step.
    """

    choices: tuple[tuple[str, tuple[str, ...]], ...] = field(
        default_factory=lambda: _frozen_choices(METHODOLOGICAL))
    death_rate_range: tuple[float, float] = (0.4, 0.9)
    death_rate_step: float | None = 0.1

    def __post_init__(self) -> None:
        if not self.choices:
            raise LSHUsageError("search space: choices must name at least one hyperparameter")
        for name, values in self.choices:
            if not values:
                raise LSHUsageError(f"search space: {name!r} has no allowed values")
            if len(set(values)) != len(values):
                raise LSHUsageError(f"search space: {name!r} lists a value twice: {list(values)}")
            if name == "death_rate":
                raise LSHUsageError("search space: 'death_rate' is continuous, not a choice")
        low, high = self.death_rate_range
        check_range("death_rate_range low", low, 0.0, 1.0, high_open=True)
        check_range("death_rate_range high", high, 0.0, 1.0, high_open=True)
        if low > high:
            raise LSHUsageError(f"death_rate_range={self.death_rate_range} must have low <= high")
        if self.death_rate_step is not None:
            check_range("death_rate_step", self.death_rate_step, 0.0, 1.0, low_open=True)

    # ---------------------------------------------------------------- basics
    @property
    def names(self) -> tuple[str, ...]:
        """Hyperparameter names: the categoricals in order, then ``death_rate``."""
        return tuple(n for n, _ in self.choices) + ("death_rate",)

    def choices_of(self, name: str) -> tuple[str, ...]:
        """Allowed values of the categorical ``name``."""
        return dict(self.choices)[name]

    def with_choices(self, **choices: tuple[str, ...]) -> "SearchSpace":
        """A copy with some categoricals replaced or added (e.g. ``growth=(...)``)."""
        merged = dict(self.choices)
        merged.update({k: tuple(v) for k, v in choices.items()})
        return replace(self, choices=_frozen_choices(merged))

    def death_rate_values(self) -> tuple[float, ...] | None:
        """The death-rate lattice when stepped, else ``None``."""
        if self.death_rate_step is None:
            return None
        low, high = self.death_rate_range
        n = int(math.floor((high - low) / self.death_rate_step + 1e-9))
        return tuple(round(low + i * self.death_rate_step, 10) for i in range(n + 1))

    def snap_death_rate(self, value: float) -> float:
        """Clip ``value`` into the range and round it to the lattice (if stepped)."""
        low, high = self.death_rate_range
        v = min(max(float(value), low), high)
        lattice = self.death_rate_values()
        if lattice is None:
            return v
        return min(lattice, key=lambda x: (abs(x - v), x))

    # ------------------------------------------------------------ validation
    def validate(self, config: Mapping[str, Any], *, allow_extra: bool = True) -> dict:
        """Check ``config`` and return its hyperparameters as a plain dict.

        Args:
            config: a dict holding at least every name of :attr:`names`.
            allow_extra: ignore keys outside the space (``cid``, seeds, …); when ``False`` they
                are an error.

        Raises:
            LSHUsageError: a missing key, an unknown value (naming the allowed choices), a
                death rate outside the range or off the lattice, or an extra key.
        """
        if not isinstance(config, Mapping):
            raise LSHUsageError(f"config must be a dict, got {type(config).__name__}")
        missing = [n for n in self.names if n not in config]
        if missing:
            raise LSHUsageError(f"config lacks {', '.join(missing)}; a config needs: {', '.join(self.names)}")
        if not allow_extra:
            extra = sorted(set(config) - set(self.names))
            if extra:
                raise LSHUsageError(f"config has unknown keys {extra}; allowed: {', '.join(self.names)}")
        out: dict[str, Any] = {}
        for name, values in self.choices:
            check_choice(name, config[name], values)
            out[name] = str(config[name])
        rate = config["death_rate"]
        low, high = self.death_rate_range
        check_range("death_rate", rate, low, high)
        rate = float(rate)
        lattice = self.death_rate_values()
        if lattice is not None and all(abs(rate - v) > 1e-6 for v in lattice):
            raise LSHUsageError(
                f"death_rate={rate!r} is not on the step-{self.death_rate_step} lattice; allowed: "
                f"{', '.join(map(str, lattice))}")
        out["death_rate"] = self.snap_death_rate(rate)
        return out

    # ------------------------------------------------------------ generators
    def grid(self, death_rate: float = DEFAULT_DEATH_RATE_GRID) -> list[dict]:
        """Every combination of the categoricals at a fixed ``death_rate`` (24 by default).

        The order is lexicographic in the order of :attr:`choices` (stable across versions).
        """
        rate = self.validate({**{n: v[0] for n, v in self.choices}, "death_rate": death_rate})["death_rate"]
        configs: list[dict] = [{}]
        for name, values in self.choices:
            configs = [{**c, name: v} for c in configs for v in values]
        return [{**c, "death_rate": rate} for c in configs]

    def sample(self, rng: random.Random) -> dict:
        """One config drawn uniformly (categoricals uniform, death rate uniform then snapped)."""
        out = {name: values[rng.randrange(len(values))] for name, values in self.choices}
        lattice = self.death_rate_values()
        if lattice is None:
            out["death_rate"] = rng.uniform(*self.death_rate_range)
        else:
            out["death_rate"] = lattice[rng.randrange(len(lattice))]
        return out

    def to_hyperopt(self) -> dict:
        """A hyperopt space: ``hp.choice`` per categorical and ``hp.quniform``/``hp.uniform``.

        Decode a hyperopt point (indices for choices) with :meth:`from_hyperopt_point`.
        """
        from hyperopt import hp

        space: dict[str, Any] = {name: hp.choice(name, list(values)) for name, values in self.choices}
        low, high = self.death_rate_range
        if self.death_rate_step is None:
            space["death_rate"] = hp.uniform("death_rate", low, high)
        else:
            space["death_rate"] = hp.quniform("death_rate", low, high, self.death_rate_step)
        return space

    def to_hyperopt_point(self, config: Mapping[str, Any]) -> dict:
        """Encode a config the way hyperopt stores it in ``Trials`` (choice → index)."""
        cfg = self.validate(config)
        point: dict[str, Any] = {n: self.choices_of(n).index(cfg[n]) for n, _ in self.choices}
        point["death_rate"] = cfg["death_rate"]
        return point

    def from_hyperopt_point(self, point: Mapping[str, Any]) -> dict:
        """Decode a hyperopt point (choice indices) into a validated config."""
        cfg = {n: values[int(point[n])] for n, values in self.choices}
        cfg["death_rate"] = self.snap_death_rate(float(point["death_rate"]))
        return cfg

    def to_configspace(self, seed: int | None = None):
        """A ``ConfigSpace.ConfigurationSpace`` (categoricals + a float ``death_rate``).

        The death rate is a ``Float`` on the range; samples are snapped to the lattice by
        :meth:`from_configspace`.
        """
        from ConfigSpace import Categorical, ConfigurationSpace, Float

        cs = ConfigurationSpace(seed=seed)
        hps = [Categorical(name, list(values)) for name, values in self.choices]
        hps.append(Float("death_rate", tuple(float(x) for x in self.death_rate_range)))
        cs.add(hps)
        return cs

    def from_configspace(self, configuration: Mapping[str, Any]) -> dict:
        """Decode a ConfigSpace ``Configuration`` (or its dict) into a validated config."""
        cfg = {n: str(configuration[n]) for n, _ in self.choices}
        cfg["death_rate"] = self.snap_death_rate(float(configuration["death_rate"]))
        return self.validate(cfg)

    # --------------------------------------------------------------- serialise
    def to_dict(self) -> dict:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {"choices": {n: list(v) for n, v in self.choices},
                "death_rate_range": list(self.death_rate_range),
                "death_rate_step": self.death_rate_step}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        """Inverse of :meth:`to_dict`."""
        return cls(choices=_frozen_choices({k: tuple(v) for k, v in d["choices"].items()}),
                   death_rate_range=tuple(d["death_rate_range"]),  # type: ignore[arg-type]
                   death_rate_step=d.get("death_rate_step"))


#: The paper's space: 24 methodological variants, death rate in [0.4, 0.9] in steps of 0.1.
DEFAULT_SPACE = SearchSpace()
