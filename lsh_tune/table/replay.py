"""Replaying searches against a table instead of training (Ray-free, seconds).

:func:`replay_search` runs the search's own :class:`~lsh_tune.search.SearchLedger` — the same
:class:`~lsh_tune.search._pool.CandidatePool`, refill generators (grid, random, TPE, ATPE,
Hyperband, BOHB), ranking signals (:mod:`lsh_tune.search.signals`) and the not-learning rule — and answers every
candidate's round boundary and final result from the table: candidate ``cid`` trains with the
table's seed ``seeds[crc32(seed, cid) % len(seeds)]`` (a real search seeds each candidate
``crc32(seed, cid)``); the dense reference is the table's reference at ``seeds[seed % len(seeds)]``.
A refill proposing a configuration the table lacks is answered by the nearest tabulated one
(:meth:`Table.nearest`); ``substituted`` counts how often.

Simulated wall time (``sim_time_s``) uses the logged seconds of each epoch (training, plus the LS
of one state convention per epoch with a signal that ranks spectra; epoch 0's LS in the first round) under
``gpus`` parallel workers: each round is the makespan of its candidates' epochs (list scheduling
in id order, the scheduler's order), the reference's whole training joins round 0, then the
finalists train to the end.

What an untrained model scores (``PoolConfig.untrained_ppl``, above which a candidate is not learning):
the table's reference at epoch 0 with a signal that needs a reference, else the vocabulary size of the
table's corpus (what a search that trains no reference uses). Trial start/pause overheads are not counted.

:func:`replay_sequential` is Fig. 3-right's baseline: configurations trained one after another
(``gpus`` at a time) to the end, in a seeded random order; the best validation perplexity so far
is the answer at each moment.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

from lsh_tune.errors import LSHUsageError, check_choice, check_int
from lsh_tune.lyapunov import CONVENTIONS
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS
from lsh_tune.search import HPO_METHODS
from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search._ls_fit import LS_FITS
from lsh_tune.search._pool import FINAL, SELECTION
from lsh_tune.search.signals import (DEFAULT_METRIC, RANKING_METRICS, apply_ls_preset, ls_preset_field, ls_setting,
                                     signal_for)
from lsh_tune.seeds import derive_seed
from lsh_tune.space import DEFAULT_DEATH_RATE_GRID
from lsh_tune.table._distances import history
from lsh_tune.table._format import REFERENCE_KEY
from lsh_tune.table._table import Table

__all__ = ["ReplaySettings", "LS_HISTORIES", "replay_search", "replay_sequential", "makespan", "time_to_targets"]

#: ``epoch``: the LS history holds every epoch from 0 (paper §3); ``boundary``: one per round
#: boundary, no epoch 0 (the search before per-epoch histories).
LS_HISTORIES = ("epoch", "boundary")


@dataclass(frozen=True)
class ReplaySettings:
    """One replayed search (the ``lsh-tune replay`` options: one per field, from its metadata).

    Args:
        hpo: refill generator (:data:`~lsh_tune.search.HPO_METHODS`).
        metric: the ranking signal (:data:`~lsh_tune.search.signals.SIGNALS`: ``ls``, ``loss``, ``hybrid``).
        pool: initial pool size.
        rounds_every: E.
        final_k, max_rounds: as in a search.
        seed: search seed (generator, candidate seeds, reference seed).
        gpus: parallel workers of the simulated wall time.
        ls_state, ls_embedding, ls_distance, ls_fit: the LS settings ranked with.
        ls_preset: named LS settings (:data:`~lsh_tune.search.signals.LS_PRESETS`; ``ls_qr`` is the table's).
        ls_history: ``epoch`` (every epoch from 0) or ``boundary``.
        ls_top: rank by only the ``ls_top`` leading exponents (a search's ``--ls-top``); ``None`` = all.
        grid_death_rate: death rate of the ``grid`` variants.
    """

    hpo: str = field(default="grid", metadata={
        "choices": HPO_METHODS, "help": "refill generator of a replayed search (metric ls/loss/hybrid)"})
    metric: str = field(default=DEFAULT_METRIC, metadata={
        "choices": RANKING_METRICS,
        "help": "what the search ranks by: hybrid (mean of the LS and the loss rank; the search's default), ls (LS "
                "distance, LSH as published) or loss"})
    pool: int = field(default=24, metadata={"help": "initial pool size"})
    rounds_every: int = field(default=1, metadata={"help": "E: epochs per round"})
    final_k: int = field(default=2, metadata={"help": "stop halving at this pool size"})
    max_rounds: int | None = field(default=None, metadata={"help": "cap on halving rounds"})
    seed: int = field(default=0, metadata={"help": "search seed (generator, candidate seeds, reference seed)"})
    gpus: int = field(default=1, metadata={"help": "parallel workers of the simulated wall time"})
    ls_state: str = field(default="h", metadata={
        "choices": CONVENTIONS, "help": "state convention of the spectra ranked with (the table must have logged it)"})
    ls_embedding: str = ls_setting("ls_embedding")
    ls_distance: str = ls_setting("ls_distance")
    ls_fit: str = ls_setting("ls_fit")
    ls_preset: str | None = ls_preset_field()
    ls_history: str = field(default="epoch", metadata={
        "choices": LS_HISTORIES, "help": "epoch (every epoch from 0, paper) or boundary (one spectrum per round)"})
    ls_top: int | None = field(default=None, metadata={
        "metavar": "K", "help": "rank by only the K leading exponents (as a search's --ls-top)"})
    grid_death_rate: float = field(default=DEFAULT_DEATH_RATE_GRID, metadata={
        "help": "death rate of the grid variants (hpo grid)"})

    def __post_init__(self) -> None:
        apply_ls_preset(self)
        check_choice("hpo", self.hpo, HPO_METHODS)
        check_choice("metric", self.metric, RANKING_METRICS)
        check_choice("ls_state", self.ls_state, CONVENTIONS)
        check_choice("ls_embedding", self.ls_embedding, EMBEDDINGS)
        check_choice("ls_distance", self.ls_distance, METRICS)
        check_choice("ls_fit", self.ls_fit, LS_FITS)
        check_choice("ls_history", self.ls_history, LS_HISTORIES)
        check_int("gpus", self.gpus, 1)
        check_int("ls_top", self.ls_top, 1, allow_none=True)
        check_int("seed", self.seed, 0)
        check_int("pool", self.pool, 2)
        if self.final_k >= self.pool:
            raise LSHUsageError(f"final_k={self.final_k} must be below pool={self.pool} (else nothing is selected)")


@functools.lru_cache(maxsize=4)
def _vocabulary_size(corpus: str) -> int:
    from lsh_tune.data import load_corpus

    return len(load_corpus(corpus).vocab)


def vocabulary_size(table: Table) -> int:
    """The vocabulary size V of the table's corpus (read once per process): a uniform prediction's
    perplexity, what a search that trains no reference takes for an untrained model's."""
    return _vocabulary_size(table.settings.corpus)


def makespan(durations: Iterable[float], workers: int) -> float:
    """Seconds until ``durations`` (in order) are done on ``workers`` slots, each task going to the
    slot free first (list scheduling)."""
    slots = [0.0] * int(workers)
    for d in durations:
        i = min(range(len(slots)), key=lambda j: (slots[j], j))
        slots[i] += float(d)
    return max(slots)


class _Replay:
    """The state of one replay: the ledger, which table run answers each candidate, the clock."""

    def __init__(self, table: Table, s: ReplaySettings, space) -> None:
        if s.ls_state not in table.settings.ls_states:
            raise LSHUsageError(f"ls_state={s.ls_state!r}: the table logged {list(table.settings.ls_states)}")
        self.table, self.s = table, s
        self.signal = signal_for(s)
        self.with_ls = self.signal.needs_reference
        seeds = table.settings.seeds
        self.ref_seed = seeds[s.seed % len(seeds)]
        kwargs = {"death_rate": s.grid_death_rate} if s.hpo == "grid" else {}
        ref_run = table.run(REFERENCE_KEY, self.ref_seed)
        untrained = math.exp(ref_run["epochs"][0]["val_loss"]) if self.with_ls else float(vocabulary_size(table))
        schedule = SearchLedger.pool_config_for(
            s.hpo, pool_size=s.pool, rounds_every=s.rounds_every, max_epochs=table.settings.epochs,
            final_k=s.final_k, max_rounds=s.max_rounds, metric=s.metric, seed=s.seed, untrained_ppl=untrained)
        fit = None
        if self.with_ls:
            reference = history(ref_run, s.ls_state)
            if s.ls_top is not None and s.ls_top > reference.shape[1]:
                raise LSHUsageError(f"ls_top={s.ls_top} exceeds the {reference.shape[1]} exponents the table logged "
                                    f"under ls_state={s.ls_state!r}; use 1…{reference.shape[1]}")
            fit = self.signal.make_fit(reference[:, :s.ls_top])
        self.ledger = SearchLedger.create(schedule, s.hpo, space, None, ls_fit=fit, signal=self.signal, **kwargs)
        self.answer: dict[str, tuple[str, int]] = {}
        self.substituted = 0
        self.clock = 0.0
        self.candidate_epochs = 0

    def source(self, cid: str) -> tuple[str, int]:
        """(table key, table seed) answering candidate ``cid``."""
        if cid not in self.answer:
            key, exact = self.table.nearest(self.ledger.pool.candidates[cid].config)
            self.substituted += not exact
            seeds = self.table.settings.seeds
            self.answer[cid] = key, seeds[derive_seed(self.s.seed, cid) % len(seeds)]
        return self.answer[cid]

    def _seconds(self, cid: str, first: int, last: int) -> float:
        """Seconds candidate ``cid`` spends on epochs ``first``…``last`` (its LS included when the signal
        ranks spectra)."""
        key, seed = self.source(cid)
        total = sum(self.table.epoch_time(key, seed, e, with_ls=self.with_ls and self._has_ls(e))
                    for e in range(first, last + 1))
        self.candidate_epochs += last - max(first, 1) + 1
        return total

    def _has_ls(self, epoch: int) -> bool:
        return self.s.ls_history == "epoch" or epoch % self.s.rounds_every == 0

    def _boundary(self, cid: str, previous: int, epoch: int) -> None:
        key, seed = self.source(cid)
        run = self.table.run(key, seed)
        rec = run["epochs"][epoch]
        info = {"val_loss": rec["val_loss"], "val_ppl": rec["val_ppl"]}
        if not self.with_ls:
            self.ledger.on_boundary(cid, epoch, float(rec[self.signal.reported_key]), info)
            return
        first = 0 if previous == 0 else previous + 1
        epochs = range(first, epoch + 1) if self.s.ls_history == "epoch" else [epoch]
        spectra = {e: run["epochs"][e]["ls"][self.s.ls_state][:self.s.ls_top] for e in epochs}
        self.ledger.on_boundary(cid, epoch, None, info, spectra=spectra)

    def round(self, first_round: bool) -> None:
        """Answer every active candidate's next boundary; the last one closes the round."""
        pending = [c for c in self.ledger.pool.active() if c.pending is None]
        tasks = []
        if first_round and self.with_ls:
            ref = self.table.run(REFERENCE_KEY, self.ref_seed)
            tasks.append(sum(self.table.epoch_time(REFERENCE_KEY, self.ref_seed, e)
                             for e in range(len(ref["epochs"]))))
        for c in pending:
            previous = c.epochs[-1] if c.epochs else 0
            epoch = previous + self.s.rounds_every
            start = 0 if previous == 0 and self.with_ls and self._has_ls(0) else previous + 1
            tasks.append(self._seconds(c.cid, start, epoch))
            self._boundary(c.cid, previous, epoch)
        self.clock += makespan(tasks, self.s.gpus)

    def finals(self) -> None:
        """Train the finalists to the end and hand their final results to the ledger."""
        tasks = []
        for c in [c for c in self.ledger.pool.alive() if c.status == FINAL]:
            key, seed = self.source(c.cid)
            last = c.epochs[-1] if c.epochs else 0
            tasks.append(self._seconds(c.cid, last + 1, self.table.settings.epochs))
            self.ledger.on_final(c.cid, {"epoch": self.table.settings.epochs, **self.table.run(key, seed)["final"]})
        self.clock += makespan(tasks, self.s.gpus)


def replay_search(table: Table, settings: ReplaySettings, space=None) -> dict:
    """Replay one search against ``table``: LSH (``metric=ls``), loss-based (``metric=loss``), or any
    other registered ranking signal (:data:`~lsh_tune.search.signals.SIGNALS`).

    ``space``: the searched :class:`~lsh_tune.space.SearchSpace` (default: the table's space cut
    to its tabulated categorical values, :meth:`Table.tabulated_space`).

    Returns:
        ``{"settings", "chosen": {cid, key, config, seed, val_ppl, test_ppl, rank, mean_test_ppl},
        "n_configs", "trajectory" (the answer is known only at the end: one point), "sim_time_s", "candidate_epochs", "candidates", "substituted", "answers": {cid:
        [proposed config, table key]}, "rounds"}``
        (``rank``: 1-based among the tabulated configurations by mean test perplexity over seeds).
    """
    r = _Replay(table, settings, table.tabulated_space() if space is None else space)
    first = True
    while not r.ledger.done:
        phase, before = r.ledger.pool.phase, r.ledger.pool.round
        if phase == SELECTION:
            r.round(first)
            first = False
        else:
            r.finals()
        if r.ledger.pool.phase == phase and r.ledger.pool.round == before and phase == SELECTION:
            raise RuntimeError("replay made no progress: a round did not close")  # pragma: no cover
    best = r.ledger.pool.best()
    key, seed = r.source(best.cid)
    chosen = {"cid": best.cid, "key": key, "config": table.config(key), "seed": seed,
              "val_ppl": best.final["val_ppl"], "test_ppl": best.final["test_ppl"], "rank": table.rank(key),
              "mean_test_ppl": table.final(key)}
    trajectory = [{"time_s": r.clock, "key": key, "val_ppl": chosen["val_ppl"], "test_ppl": chosen["test_ppl"]}]
    return {"settings": asdict(settings), "chosen": chosen, "n_configs": len(table.keys), "trajectory": trajectory,
            "sim_time_s": r.clock, "candidate_epochs": r.candidate_epochs,
            "candidates": len(r.ledger.pool.candidates), "substituted": r.substituted,
            "answers": {cid: [r.ledger.pool.candidates[cid].config, key] for cid, (key, _) in r.answer.items()},
            "rounds": [{"round": d["round"], "ranking": d["ranking"], "removed": d["removed"],
                        "not_learning": d.get("not_learning", {})} for d in r.ledger.pool.rounds]}


def replay_sequential(table: Table, *, budget: int | None = None, seed: int = 0, gpus: int = 1) -> dict:
    """Sequential full-training search: ``budget`` configurations (all by default) in a seeded random
    order, each trained to the end without LS, ``gpus`` at a time; the answer is the best validation
    perplexity finished so far.

    Returns:
        ``{"trajectory": [{"time_s", "key", "val_ppl", "test_ppl"} of the incumbent after each
        finished configuration], "chosen": {...}, "sim_time_s"}``.
    """
    import random

    check_int("gpus", gpus, 1)
    check_int("budget", budget, 1, allow_none=True)
    keys = list(table.keys)
    random.Random(derive_seed(seed, "sequential")).shuffle(keys)
    keys = keys[:budget] if budget is not None else keys
    seeds = table.settings.seeds
    slots = [0.0] * int(gpus)
    finished = []
    for k in keys:
        s = seeds[derive_seed(seed, k) % len(seeds)]
        i = min(range(len(slots)), key=lambda j: (slots[j], j))
        slots[i] += sum(table.epoch_time(k, s, e, with_ls=False) for e in range(1, table.settings.epochs + 1))
        finished.append((slots[i], k, table.run(k, s)["final"]))
    trajectory, best = [], None
    for t, k, final in sorted(finished, key=lambda x: x[0]):
        if best is None or final["val_ppl"] < best[2]["val_ppl"]:
            best = (t, k, final)
        trajectory.append({"time_s": t, "key": best[1], "val_ppl": best[2]["val_ppl"],
                           "test_ppl": best[2]["test_ppl"]})
    chosen = {"key": best[1], "val_ppl": best[2]["val_ppl"], "test_ppl": best[2]["test_ppl"],
              "rank": table.rank(best[1])}
    return {"trajectory": trajectory, "chosen": chosen, "sim_time_s": max(slots)}


def time_to_targets(trajectory: list[dict], targets: Iterable[float]) -> dict[float, float]:
    """For each target test perplexity, the first ``time_s`` whose incumbent reaches it (``inf``: never)."""
    out = {}
    for target in targets:
        hit = [p["time_s"] for p in trajectory if p["test_ppl"] <= target]
        out[float(target)] = min(hit) if hit else math.inf
    return out
