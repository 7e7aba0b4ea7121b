"""The LSH candidate pool: removal, refill counts, termination (paper §3 "LS-based Hyperpruning").

Ray-free. Every candidate trains ``E`` epochs of its own per round; when every active candidate
has reported its round metric (the value of the search's ranking signal,
:mod:`lsh_tune.search.signals`: LS distance to the dense reference, validation loss, ...; lower is
better), :meth:`CandidatePool.decide` ranks the pool, removes the farther ⌊n/2⌋ and asks the refill
generator for ⌊n/4⌋ new candidates (n = pool size before removal). Halving stops when the pool is
at or below ``final_k`` or a round/epoch budget is spent; the survivors are then trained to
``max_epochs`` (of their own training) and the best validation perplexity wins.

Conventions (documented choices):

* Ranking: candidates that are not learning (:func:`lsh_tune.search.signals.not_learning`: a
  non-finite loss, a validation perplexity above an untrained model's, or one more than doubled since
  the candidate's previous round) rank behind every candidate that is, whatever their metric, the
  lower validation perplexity first among them; the round records why (``not_learning``). The others:
  ascending metric, ties broken by candidate id; a NaN or infinite metric (a diverged RNN, exploding
  exponents) ranks behind every finite one.
* Removal never leaves fewer than ``final_k`` survivors: ``removed = min(⌊n/2⌋, n − final_k)``.
  A round that reaches ``final_k`` (or spends the budget) generates nothing.
* Bracketed generators (``hyperband``, ``bohb``): each refill batch is a bracket (the initial
  pool is bracket 0); a candidate is ranked only against its bracket — its score is its mid-rank
  quantile ``(rank + ½)/n_b`` within the bracket — and the ⌊n/2⌋ highest scores are removed
  (ties: larger metric, then id), candidates that are not learning before any other. With one
  bracket this is plain ranking.

The whole state is a JSON dict (:meth:`CandidatePool.state_dict`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

from lsh_tune.errors import LSHUsageError, check_int, check_range
from lsh_tune.search.signals import RANKING_METRICS, not_learning, signal_class, val_ppl_of

__all__ = ["ACTIVE", "FINAL", "FINISHED", "REMOVED", "FAILED", "RANKING_METRICS", "Candidate", "PoolConfig",
           "CandidatePool", "RoundDecision", "diverged", "plan_rounds", "plan_schedule", "required_max_epochs"]

ACTIVE, FINAL, FINISHED, REMOVED, FAILED = "active", "final", "finished", "removed", "failed"
SELECTION, FINAL_PHASE, DONE = "selection", "final", "done"
#: Extras whose non-finite value marks a candidate as diverged (:func:`diverged`).
_DIVERGENCE_KEYS = ("train_loss", "val_loss", "val_ppl", "test_loss", "test_ppl")


@dataclass(frozen=True)
class PoolConfig:
    """Schedule of one LSH search.

    Args:
        pool_size: initial number of candidates |P| (paper: 20, 24, 30, 40).
        rounds_every: E, epochs of a candidate's own training per round (paper: 3).
        max_epochs: total epochs of a finalist's own training (selection epochs included); must
            exceed the selection epochs of the oldest candidate (see :func:`plan_rounds`).
        final_k: stop halving when at most this many candidates remain (default 2).
        max_rounds: optional cap on the number of halving rounds.
        epoch_budget: optional cap on candidate-epochs spent in selection (Σ over rounds n·E).
        metric: the ranking signal's name (:data:`~lsh_tune.search.signals.SIGNALS`: ``ls``, the distance
            to the dense reference; ``loss``, the validation loss baseline; ``hybrid``, their rank average).
        generates: whether rounds refill (``grid``: no).
        bracketed: Hyperband-style per-bracket ranking (``hyperband``, ``bohb``).
        seed: seed of the generator (candidate ids are deterministic anyway).
        untrained_ppl: validation perplexity of an untrained model: a candidate above it at a round
            boundary is not learning (the dense reference's at initialisation where known, else the
            vocabulary size; ``None``: that test is off).

    Raises:
        LSHUsageError: a value out of range or a ``max_epochs`` too small for the schedule.
    """

    pool_size: int
    rounds_every: int = 3
    max_epochs: int = 10
    final_k: int = 2
    max_rounds: int | None = None
    epoch_budget: int | None = None
    metric: str = "ls"
    generates: bool = True
    bracketed: bool = False
    seed: int = 0
    untrained_ppl: float | None = None

    def __post_init__(self) -> None:
        check_int("max_epochs", self.max_epochs, 1)
        check_int("seed", self.seed, 0)
        signal_class(self.metric)
        if self.untrained_ppl is not None:
            check_range("untrained_ppl", self.untrained_ppl, 1.0, low_open=True)
        rounds = plan_rounds(self)
        need = required_max_epochs(len(rounds), self.rounds_every)
        if self.max_epochs < need:
            raise LSHUsageError(
                f"max_epochs={self.max_epochs} is too small: the schedule has {len(rounds)} round(s) of "
                f"E={self.rounds_every} epochs, so the oldest finalist has trained {need - 1} epochs when "
                f"selection ends; use max_epochs >= {need} (or lower --pool/--max-rounds)")


def _round_counts(n: int, final_k: int, generates: bool) -> tuple[int, int]:
    """(removed, generated) for a round with n active candidates (before budget checks)."""
    removed = min(n // 2, max(0, n - final_k))
    generated = n // 4 if generates and n - removed > final_k else 0
    return removed, generated


def _budget_spent(max_rounds: int | None, epoch_budget: int | None, rounds_done: int, epochs_spent: int) -> bool:
    return ((max_rounds is not None and rounds_done >= max_rounds)
            or (epoch_budget is not None and epochs_spent >= epoch_budget))


def plan_schedule(pool_size: int, rounds_every: int = 3, final_k: int = 2, *, generates: bool = True,
                  max_rounds: int | None = None, epoch_budget: int | None = None) -> list[tuple[int, int, int]]:
    """The selection schedule of these settings as ``[(n, removed, generated), ...]``, one entry per round.

    Counts depend neither on the metrics nor on ``max_epochs``, so the plan is exact (failed
    trials aside) and can size ``max_epochs`` (see :func:`required_max_epochs`).

    Raises:
        LSHUsageError: a count out of range.

    >>> plan_schedule(8, rounds_every=1)
    [(8, 4, 2), (6, 3, 1), (4, 2, 0)]
    """
    check_int("pool_size", pool_size, 1)
    check_int("rounds_every", rounds_every, 1)
    check_int("final_k", final_k, 1)
    check_int("max_rounds", max_rounds, 0, allow_none=True)
    check_int("epoch_budget", epoch_budget, 0, allow_none=True)
    out: list[tuple[int, int, int]] = []
    n, spent = pool_size, 0
    while n > final_k:
        removed, generated = _round_counts(n, final_k, generates)
        spent += n * rounds_every
        stop = n - removed <= final_k or _budget_spent(max_rounds, epoch_budget, len(out) + 1, spent)
        out.append((n, removed, 0 if stop else generated))
        if stop:
            break
        n = n - removed + generated
    return out


def plan_rounds(cfg: PoolConfig) -> list[tuple[int, int, int]]:
    """:func:`plan_schedule` of a :class:`PoolConfig`.

    >>> plan_rounds(PoolConfig(8, rounds_every=1, max_epochs=5))
    [(8, 4, 2), (6, 3, 1), (4, 2, 0)]
    """
    return plan_schedule(cfg.pool_size, cfg.rounds_every, cfg.final_k, generates=cfg.generates,
                         max_rounds=cfg.max_rounds, epoch_budget=cfg.epoch_budget)


def required_max_epochs(n_rounds: int, rounds_every: int) -> int:
    """The smallest ``max_epochs`` of a schedule with ``n_rounds`` rounds of E = ``rounds_every`` epochs.

    The oldest finalist has trained ``n_rounds * E`` epochs when selection ends and trains at
    least one more.
    """
    return n_rounds * rounds_every + 1


@dataclass
class Candidate:
    """One pruned-network configuration in the pool.

    Attributes:
        cid: stable id (``c000``, ``c001``, ... in order of creation).
        config: hyperparameters (see :mod:`lsh_tune.space`).
        born_round: global round after which it was generated (0 = initial pool); its bracket.
        status: ``active`` | ``final`` | ``finished`` | ``removed`` | ``failed``.
        history: decided metric value per own round.
        epochs: the candidate's own epoch count at each decided round.
        val_ppl: its validation perplexity at each decided round (``None`` where not reported).
        pending: ``[epoch, value]`` reported for the current round, not yet decided (``value`` is
            ``None`` until :meth:`CandidatePool.rescore` when the round's values are computed at its close).
        removed_round: global round that removed it.
        final: final metrics of a finalist (``val_ppl``, ``test_ppl``, ``density`` ...).
        last: extra metrics of its latest recorded round (``val_ppl``, ``density`` ...).
    """

    cid: str
    config: dict
    born_round: int = 0
    status: str = ACTIVE
    history: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    pending: list | None = None
    removed_round: int | None = None
    final: dict | None = None
    last: dict | None = None
    val_ppl: list = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.status in (ACTIVE, FINAL)

    def round_info(self) -> dict:
        """The extras reported with the open round's boundary (``val_loss``, ``val_ppl`` ...; ``{}``: none)."""
        last = self.last or {}
        return last if self.pending is not None and last.get("epoch") == self.pending[0] else {}


@dataclass(frozen=True)
class RoundDecision:
    """Outcome of one round: the ranking (best first), who goes, who comes, whether halving ended, and
    why the candidates that are not learning are (cid -> reason, :func:`~lsh_tune.search.signals.not_learning`)."""

    round: int
    ranking: list[tuple[str, float]]
    removed: list[str]
    generated: list[str]
    done: bool
    not_learning: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _sort_key(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _round_ppl(c: "Candidate") -> float | None:
    """``c``'s validation perplexity at its open round's boundary (from ``val_ppl`` or ``val_loss``)."""
    return val_ppl_of(c.round_info())


def diverged(c: Candidate) -> bool:
    """Whether candidate ``c`` diverged: a non-finite round value (NaN/inf loss or LS distance), or a
    non-finite loss or perplexity in its latest round's extras or its final metrics."""
    values = [*c.history, *([] if c.pending is None or c.pending[1] is None else [c.pending[1]])]
    for extras in (c.last or {}, c.final or {}):
        values += [v for k, v in extras.items() if k in _DIVERGENCE_KEYS and isinstance(v, (int, float))]
    return any(not math.isfinite(float(v)) for v in values)


def _order(value: float) -> tuple[float, bool]:
    return _sort_key(value), math.isnan(value)


def rank(values: dict[str, float], not_learning: dict[str, str] | None = None,
         val_ppl: dict[str, float | None] | None = None) -> list[tuple[str, float]]:
    """Candidates sorted best first: those learning by ascending value (non-finite last, ties by id),
    then those in ``not_learning`` by ascending ``val_ppl`` (unknown last), value, id."""
    bad, ppl = not_learning or {}, val_ppl or {}

    def key(kv: tuple[str, float]) -> tuple:
        cid, value = kv
        if cid not in bad:
            return (0, 0.0, False, *_order(value), cid)
        p = ppl.get(cid)
        return (1, *_order(math.nan if p is None else float(p)), *_order(value), cid)

    return sorted(values.items(), key=key)


def choose_removed(values: dict[str, float], brackets: dict[str, int] | None, k: int,
                   not_learning: dict[str, str] | None = None,
                   val_ppl: dict[str, float | None] | None = None) -> list[str]:
    """The ``k`` candidates to remove: the worst overall, or the worst per bracket (see module doc);
    candidates that are not learning first either way."""
    if k <= 0:
        return []
    bad = not_learning or {}
    if not brackets:
        return [cid for cid, _ in rank(values, bad, val_ppl)[::-1][:k]]
    worst_bad = [cid for cid, _ in rank({c: v for c, v in values.items() if c in bad}, bad, val_ppl)[::-1]]
    score: dict[str, float] = {}
    for b in sorted(set(brackets.values())):
        members = {c: v for c, v in values.items() if brackets[c] == b and c not in bad}
        for r, (cid, _) in enumerate(rank(members)):
            score[cid] = (r + 0.5) / len(members)
    order = sorted(score, key=lambda c: (-score[c], -_sort_key(values[c]), c))
    return (worst_bad + order)[:k]


class CandidatePool:
    """State machine of one LSH search (see module docstring).

    Args:
        config: the schedule.
        initial: configs of the initial pool (length ``config.pool_size``).

    The refill configs are produced by the caller (a generator) and added with :meth:`add` after
    :meth:`decide` returns ``n_generate``; :meth:`decide` takes a callable for that.
    """

    def __init__(self, config: PoolConfig, initial: Iterable[dict] | None = None) -> None:
        self.config = config
        self.candidates: dict[str, Candidate] = {}
        self.rounds: list[dict] = []
        self.phase = SELECTION
        self.epochs_spent = 0
        if initial is not None:
            initial = list(initial)
            if len(initial) != config.pool_size:
                raise LSHUsageError(f"initial pool has {len(initial)} configs, pool_size={config.pool_size}")
            for cfg in initial:
                self.add(cfg, born_round=0)
            if config.pool_size <= config.final_k:
                self._enter_final()

    # ------------------------------------------------------------------ queries
    @property
    def round(self) -> int:
        """Number of decided rounds."""
        return len(self.rounds)

    def active(self) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.status == ACTIVE]

    def alive(self) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.alive]

    def ready(self) -> bool:
        """True when every active candidate has reported the current round (selection only)."""
        act = self.active()
        return self.phase == SELECTION and bool(act) and all(c.pending is not None for c in act)

    def action(self, cid: str, epoch: int | None = None) -> str:
        """What a trial of ``cid`` should do now: ``continue``, ``pause`` or ``stop``.

        ``epoch`` is the trial's own epoch count at a round boundary (``None`` mid-round).
        """
        c = self.candidates[cid]
        if not c.alive:
            return "stop"
        if c.status == FINAL:
            return "continue"
        if c.pending is not None and (epoch is None or epoch >= c.pending[0]):
            return "pause"
        return "continue"

    def released(self, cid: str) -> bool:
        """True when a paused trial of ``cid`` may run again (its round was decided)."""
        c = self.candidates[cid]
        return c.alive and c.pending is None

    # ---------------------------------------------------------------- mutation
    def add(self, config: dict, *, born_round: int | None = None) -> str:
        """Add a candidate and return its id."""
        cid = f"c{len(self.candidates):03d}"
        self.candidates[cid] = Candidate(cid, dict(config), self.round if born_round is None else born_round)
        return cid

    def record(self, cid: str, epoch: int, value: float | None, info: dict | None = None) -> bool:
        """Record the metric of ``cid`` at its round boundary ``epoch``.

        Idempotent: a replay of an already recorded or decided boundary is ignored. ``info``
        (JSON-serialisable extras such as ``val_ppl``, ``density``) is kept as ``Candidate.last``.
        ``value=None`` records the boundary only; :meth:`rescore` must set its value before
        :meth:`decide`.

        Returns:
            True when the value was new.
        """
        c = self.candidates[cid]
        if c.status != ACTIVE or (c.epochs and epoch <= c.epochs[-1]):
            return False
        if c.pending is not None:
            return False
        c.pending = [int(epoch), None if value is None else float(value)]
        if info:
            c.last = dict(info, epoch=int(epoch))
        return True

    def mark_failed(self, cid: str) -> None:
        """A trial errored: drop its candidate (it no longer blocks the round)."""
        c = self.candidates[cid]
        if c.alive:
            c.status, c.pending, c.removed_round = FAILED, None, self.round
            if self.phase == FINAL_PHASE and not self.alive():
                self.phase = DONE

    def rescore(self, values: dict[str, float]) -> None:
        """Set the values of the open round: ``values`` maps active candidates that reported to their metric.

        Raises:
            RuntimeError: a candidate that is not active or has not reported this round.
        """
        for cid, value in values.items():
            c = self.candidates.get(cid)
            if c is None or c.status != ACTIVE or c.pending is None:
                raise RuntimeError(f"rescore(): {cid!r} is not an active candidate with a boundary in the open round")
        for cid, value in values.items():
            self.candidates[cid].pending[1] = float(value)

    def decide(self, generate) -> RoundDecision:
        """Close the current round.

        Args:
            generate: ``generate(n) -> list[dict]`` producing ``n`` refill configs (called only
                when ``n > 0``; it sees the pool with this round's values already applied).

        Raises:
            RuntimeError: the round is not :meth:`ready`, or a value recorded as ``None`` was not
                :meth:`rescore`-d.
        """
        if not self.ready():
            raise RuntimeError("decide() before every active candidate reported")
        if any(c.pending[1] is None for c in self.active()):
            raise RuntimeError("decide() before rescore() set every value of the round")
        cfg = self.config
        act = self.active()
        values = {c.cid: c.pending[1] for c in act}
        ppl = {c.cid: _round_ppl(c) for c in act}
        bad = {}
        for c in act:
            why = not_learning(c.round_info(), c.val_ppl[-1] if c.val_ppl else None, cfg.untrained_ppl)
            if why is not None:
                bad[c.cid] = why
        n = len(act)
        k, n_gen = _round_counts(n, cfg.final_k, cfg.generates)
        self.epochs_spent += n * cfg.rounds_every
        brackets = {c.cid: c.born_round for c in act} if cfg.bracketed else None
        removed = choose_removed(values, brackets, k, bad, ppl)
        for c in act:
            c.epochs.append(c.pending[0])
            c.history.append(c.pending[1])
            c.val_ppl.append(ppl[c.cid])
            c.pending = None
        for cid in removed:
            self.candidates[cid].status = REMOVED
            self.candidates[cid].removed_round = self.round
        done = n - k <= cfg.final_k or _budget_spent(cfg.max_rounds, cfg.epoch_budget, self.round + 1,
                                                     self.epochs_spent)
        generated: list[str] = []
        if not done and n_gen > 0:
            for conf in generate(n_gen):
                generated.append(self.add(conf, born_round=self.round + 1))
        decision = RoundDecision(self.round, rank(values, bad, ppl), removed, generated, done, bad)
        self.rounds.append(decision.to_dict())
        if decision.done:
            self._enter_final()
        return decision

    def _enter_final(self) -> None:
        self.phase = FINAL_PHASE
        for c in self.active():
            c.status = FINAL
        if not self.alive():
            self.phase = DONE

    def record_final(self, cid: str, metrics: dict) -> None:
        """Store a finalist's final metrics (``val_ppl`` required) and mark it finished."""
        c = self.candidates[cid]
        if c.status != FINAL:
            return
        if "val_ppl" not in metrics:
            raise KeyError(f"final metrics of {cid} lack 'val_ppl'")
        c.final, c.status = dict(metrics), FINISHED
        if not self.alive():
            self.phase = DONE

    def best(self) -> Candidate | None:
        """The finished finalist with the lowest validation perplexity (ties by id)."""
        done = [c for c in self.candidates.values() if c.status == FINISHED and c.final]
        if not done:
            return None
        return min(done, key=lambda c: (_sort_key(float(c.final["val_ppl"])), c.cid))

    def observations(self) -> list[dict]:
        """One ``{cid, config, budget, value, alive}`` per decided round of every candidate.

        ``budget`` is the candidate's own round count (1, 2, ...) at that value; refill
        generators take the latest per candidate (TPE/ATPE) or all of them per budget (BOHB).
        """
        return [{"cid": c.cid, "config": c.config, "budget": j + 1, "value": v, "alive": c.alive}
                for c in self.candidates.values() for j, v in enumerate(c.history)]

    # ------------------------------------------------------------ serialisation
    def state_dict(self) -> dict:
        """JSON-serialisable state (config included)."""
        return {"config": asdict(self.config), "phase": self.phase, "epochs_spent": self.epochs_spent,
                "rounds": self.rounds, "candidates": [asdict(c) for c in self.candidates.values()]}

    @classmethod
    def from_state_dict(cls, d: dict) -> "CandidatePool":
        """Rebuild a pool saved by :meth:`state_dict`."""
        pool = cls(PoolConfig(**d["config"]))
        pool.phase, pool.epochs_spent = d["phase"], int(d["epochs_spent"])
        pool.rounds = [dict(r, ranking=[tuple(x) for x in r["ranking"]]) for r in d["rounds"]]
        for c in d["candidates"]:
            pool.candidates[c["cid"]] = Candidate(**c)
        return pool

    def not_learning(self, cid: str) -> str | None:
        """Why candidate ``cid`` was not learning in the last round that ranked it (``None``: it was)."""
        c = self.candidates[cid]
        if not c.history:
            return None
        decided = self.rounds[int(c.born_round) + len(c.history) - 1]
        return decided.get("not_learning", {}).get(cid)

    def table(self) -> list[dict]:
        """One row per candidate: config, metric per round, status, ``diverged``, ``not_learning`` (why,
        in the last round that ranked it), final metrics."""
        rows = []
        for c in self.candidates.values():
            row = {"cid": c.cid, **c.config, "born_round": c.born_round, "status": c.status,
                   "removed_round": c.removed_round, "metric_per_round": list(c.history),
                   "epochs_per_round": list(c.epochs), "diverged": diverged(c),
                   "not_learning": self.not_learning(c.cid)}
            row.update({f"last_{k}": v for k, v in (c.last or {}).items()})
            row.update({k: v for k, v in (c.final or {}).items() if not isinstance(v, (list, dict))})
            rows.append(row)
        return rows
