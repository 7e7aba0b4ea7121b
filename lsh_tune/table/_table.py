"""A table read back: its configurations, runs, nearest tabulated configuration, ranks (Ray-free).

:func:`plan_configs` chooses what a table holds: the grid at a fixed death rate first, then a
seeded sample of the rest of the space's death-rate lattice (e.g. 24 + N of the 144
configurations of 0.4…0.9 by 0.1).
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from dataclasses import replace
from typing import Any, Iterable, Mapping

from lsh_tune.errors import LSHUsageError, check_int
from lsh_tune.seeds import derive_seed
from lsh_tune.space import DEFAULT_DEATH_RATE_GRID
from lsh_tune.table._format import (REFERENCE_KEY, TableSettings, config_key, is_complete, read_manifest,
                                    read_run)

__all__ = ["Table", "plan_configs"]


def plan_configs(settings: TableSettings, *, grid: bool = True, sample: int = 0, sample_seed: int = 0,
                 grid_death_rate: float = DEFAULT_DEATH_RATE_GRID) -> list[dict]:
    """The configurations of a table, ``{"key", ...config}`` each: the grid at ``grid_death_rate``
    (if ``grid``), then ``sample`` distinct others of the lattice drawn with ``sample_seed``.

    Raises:
        LSHUsageError: ``sample`` exceeds what the lattice has left, or nothing is chosen.
    """
    check_int("sample", sample, 0)
    space = settings.search_space()
    names = tuple(space.names)
    chosen = space.grid(grid_death_rate) if grid else []
    rates = space.death_rate_values()
    if sample:
        if rates is None:
            raise LSHUsageError("sampling a table needs a stepped death rate (SearchSpace.death_rate_step)")
        lattice = [c for r in rates for c in space.grid(r)]
        keys = {config_key(c, names) for c in chosen}
        rest = [c for c in lattice if config_key(c, names) not in keys]
        if sample > len(rest):
            raise LSHUsageError(f"sample={sample} exceeds the {len(rest)} configurations left in the lattice")
        rng = random.Random(derive_seed(sample_seed, "table-sample"))
        chosen = chosen + [rest[i] for i in sorted(rng.sample(range(len(rest)), sample))]
    if not chosen:
        raise LSHUsageError("the table would hold no configuration: keep the grid or pass --sample N")
    return [{"key": config_key(c, names), **c} for c in chosen]


class Table:
    """A table directory (:mod:`lsh_tune.table._format`) with its finished runs loaded.

    Args:
        directory: the table.
        require_complete: raise unless every configuration and the reference are finished at
            every seed (replays need a complete table).
        seeds: only these of the table's training seeds (``None``: all): a table whose first
            seed is complete can be replayed and analysed while its later seeds build.

    Raises:
        LSHUsageError: not a table, or incomplete while ``require_complete``.
    """

    def __init__(self, directory: str | Path, *, require_complete: bool = True,
                 seeds: Iterable[int] | None = None) -> None:
        self.directory = Path(directory)
        manifest = read_manifest(self.directory)
        self.settings = TableSettings.from_dict(manifest["settings"])
        if seeds is not None:
            seeds = tuple(int(s) for s in seeds)
            if not seeds or not set(seeds) <= set(self.settings.seeds):
                raise LSHUsageError(f"seeds={list(seeds)} must be some of the table's training seeds "
                                    f"{list(self.settings.seeds)}")
            self.settings = replace(self.settings, seeds=seeds)
        self.configs: list[dict] = list(manifest["configs"])
        self.names = tuple(self.settings.search_space().names)
        self.runs: dict[tuple[str, int], dict] = {}
        missing = []
        for key in [REFERENCE_KEY] + [c["key"] for c in self.configs]:
            for seed in self.settings.seeds:
                run = read_run(self.directory, key, seed)
                if is_complete(run, self.settings.epochs):
                    self.runs[key, seed] = run
                else:
                    missing.append(f"{key}@{seed}")
        self.missing = missing
        if require_complete and missing:
            raise LSHUsageError(f"table {self.directory} is incomplete: {len(missing)} run(s) missing "
                                f"(first: {', '.join(missing[:3])}); finish it with `lsh-tune table build`")

    @property
    def keys(self) -> list[str]:
        return [c["key"] for c in self.configs]

    def config(self, key: str) -> dict:
        return next({k: v for k, v in c.items() if k != "key"} for c in self.configs if c["key"] == key)

    def tabulated_space(self):
        """The table's space with each categorical cut to the values some configuration has (its
        grid is then the tabulated grid; a replay samples only tabulated categoricals)."""
        space = self.settings.search_space()
        cut = {n: tuple(v for v in space.choices_of(n) if any(c[n] == v for c in self.configs))
               for n in self.names if n != "death_rate"}
        return space.with_choices(**cut)

    def run(self, key: str, seed: int) -> dict:
        return self.runs[key, seed]

    def nearest(self, config: Mapping[str, Any]) -> tuple[str, bool]:
        """The tabulated configuration closest to ``config`` and whether it is ``config`` itself.

        Closeness: fewest differing categorical values, then the smallest death-rate gap, then
        table order (a refill proposing an untabulated configuration is answered by this one, as
        Syne Tune's blackbox repository answers with its surrogate).
        """
        def gap(c: dict) -> tuple[int, float]:
            cats = sum(c[n] != config.get(n) for n in self.names if n != "death_rate")
            return cats, abs(float(c["death_rate"]) - float(config.get("death_rate", math.nan)))

        best = min(range(len(self.configs)), key=lambda i: (*gap(self.configs[i]), i))
        cats, dr = gap(self.configs[best])
        return self.configs[best]["key"], cats == 0 and dr < 1e-9

    def final(self, key: str, name: str = "test_ppl") -> float:
        """Mean of ``final[name]`` over the training seeds."""
        values = [self.runs[key, s]["final"][name] for s in self.settings.seeds]
        return float(sum(values) / len(values))

    def rank(self, key: str, name: str = "test_ppl") -> int:
        """1-based rank of ``key`` among all tabulated configurations by mean ``final[name]`` (1 = best)."""
        order = sorted(self.keys, key=lambda k: (self.final(k, name), k))
        return order.index(key) + 1

    def epoch_time(self, key: str, seed: int, epoch: int, *, with_ls: bool = True, states: int = 1) -> float:
        """Seconds of epoch ``epoch`` of run (``key``, ``seed``): training plus, with ``with_ls``,
        the LS of ``states`` conventions (the logged LS time is split evenly over the table's)."""
        rec = self.runs[key, seed]["epochs"][epoch]
        ls = rec["ls_time_s"] * states / len(self.settings.ls_states) if with_ls else 0.0
        return float(rec["epoch_time_s"]) + ls
