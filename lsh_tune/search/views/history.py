"""A search's history read back from its experiment directory, for reports, figures and TensorBoard.

Ray-free and read-only. :meth:`SearchHistory.load` reads the saved config (``lsh/search.json``),
the ledger's state (``lsh/state.json``: the pool, every round's ranking), the LS spectra of the
reference and of every candidate (``lsh/reference_ls.json``, ``lsh/spectra/``), the events
(``events.jsonl``), the epoch log and, when the search finished, ``best.json``. A search that was
interrupted has everything but ``best.json``; one that ranks by loss has no spectra.

LS-space geometry (paper §3): :meth:`SearchHistory.round_space` refits the embedding a round was
ranked in — the reference's history and, for every ranked candidate, every spectrum it sent up to
its epoch in that round (epoch 0 included when trials send it) — so its distances are that
round's ranking values (with ``--ls-fit pool``).
:meth:`SearchHistory.common_distances` fits one embedding over every spectrum of the search and
gives each candidate's distance to the reference's last spectrum at each of its boundary epochs
(the curves of the paper's Fig. 1-B).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
import numpy as np

from lsh_tune.lyapunov.distance import REFERENCE, embed_histories, ls_distances, point_distance
from lsh_tune.search._ls_fit import NEG_INF_RULES
from lsh_tune.search.layout import CONFIG_FILE, STATE_FILE, SUMMARY_FILE
from lsh_tune.search.views.events import read_event_file
from lsh_tune.storage import Storage

__all__ = ["SearchHistory", "RankedCandidate", "RoundSpace"]


@dataclass(frozen=True)
class RankedCandidate:
    """One candidate in one round: its ranking value, its own epoch count then, whether it stayed, and
    why it was not learning (``None``: it was; :func:`lsh_tune.search.signals.not_learning`)."""

    cid: str
    value: float
    epoch: int | None
    kept: bool
    val_ppl: float | None
    not_learning: str | None = None


@dataclass(frozen=True)
class RoundSpace:
    """A round's LS space: 2-D points (for plots) of the reference's history and of each ranked candidate's.

    Attributes:
        reference: (E_ref, 2) points of the reference's spectra, oldest first.
        candidates: cid -> (E_i, 2) points of its spectra up to its epoch in the round.
        epochs: cid -> the epochs of those points.
        distances: cid -> its distance to the reference in the round's embedding (the ranking value).
    """

    reference: np.ndarray
    candidates: dict[str, np.ndarray]
    epochs: dict[str, list[int]]
    distances: dict[str, float]


class SearchHistory:
    """Everything a search left behind (see the module docstring). Use :meth:`load`."""

    def __init__(self, storage: Storage, config, ledger, events: list[dict], epoch_log: list[dict],
                 summary: dict | None, warnings: tuple[str, ...] = ()) -> None:
        self.storage = storage
        self.config = config
        self.pool = ledger.pool
        self.ls_fit = ledger.ls_fit
        #: What the rounds ranked by (:mod:`lsh_tune.search.signals`), as the ledger saved it.
        self.signal = ledger.signal
        self.hpo = ledger.meta.get("hpo", getattr(config, "hpo", None))
        self.events = events
        self.epoch_log = epoch_log
        self.summary = summary
        #: What was skipped while reading (a torn last line of ``events.jsonl``), for the caller to show.
        self.warnings = tuple(warnings)

    @classmethod
    def load(cls, experiment: Storage | str | os.PathLike) -> "SearchHistory":
        """Read the experiment at ``experiment`` (directory, URI or :class:`Storage`).

        Raises:
            LSHUsageError: no search was ever started there (no ``lsh/search.json`` or ``lsh/state.json``).
        """
        from lsh_tune.errors import LSHUsageError
        from lsh_tune.search._ledger import SearchLedger
        from lsh_tune.search.candidate import read_epoch_log
        from lsh_tune.search.config import SearchConfig

        store = experiment if isinstance(experiment, Storage) else Storage(experiment)
        missing = [f for f in (CONFIG_FILE, STATE_FILE) if not store.is_file(f)]
        if missing:
            raise LSHUsageError(f"{store.uri_of()} holds no LSH search (no {' or '.join(missing)})")
        summary = store.read_json(SUMMARY_FILE) if store.is_file(SUMMARY_FILE) else None
        events = read_event_file(store)
        return cls(store, SearchConfig.load(store.uri), SearchLedger.load(store.uri), events.events,
                   read_epoch_log(store.uri), summary, tuple(w for w in (events.warning,) if w))

    # ------------------------------------------------------------ scores
    @property
    def finished(self) -> bool:
        """True when the search wrote its summary (``best.json``)."""
        return self.summary is not None

    def events_of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("kind") == kind]

    def unigram(self) -> dict[str, float]:
        """``{"valid", "test"}`` add-one unigram perplexities of the search's slices (recomputed if no event has them)."""
        for e in self.events_of("search_start"):
            if e.get("unigram"):
                return dict(e["unigram"])
        from lsh_tune.data import unigram_perplexities
        from lsh_tune.search.run.reference import search_corpus

        return unigram_perplexities(search_corpus(self.config))

    def reference_scores(self) -> dict[str, float | None]:
        """The dense reference's final ``val_ppl``/``test_ppl`` (``None`` where not known yet)."""
        done = self.events_of("reference_done")
        source = done[-1] if done else (self.summary or {}).get("reference") or {}
        return {k: source.get(k) for k in ("val_ppl", "test_ppl")}

    def reference_val_curve(self) -> dict[int, float]:
        """Epoch -> validation perplexity of the dense reference (from its progress events)."""
        return {int(e["epoch"]): float(e["val_ppl"]) for e in self.events_of("reference_epoch")
                if e.get("val_ppl") is not None}

    def val_curve(self, cid: str) -> dict[int, float]:
        """Epoch -> validation perplexity of candidate ``cid`` (its epoch events; the pool's records fill gaps)."""
        curve = {int(e["epoch"]): float(e["val_ppl"]) for e in self.events_of("epoch")
                 if e.get("cid") == cid and e.get("val_ppl") is not None}
        c = self.pool.candidates[cid]
        for rec in (c.last, c.final):
            if rec and rec.get("epoch") is not None and rec.get("val_ppl") is not None:
                curve.setdefault(int(rec["epoch"]), float(rec["val_ppl"]))
        return dict(sorted(curve.items()))

    def final(self, cid: str, key: str = "val_ppl") -> float | None:
        """A finalist's final ``key`` (``val_ppl``, ``test_ppl``, ``density``); ``None`` for the others."""
        final = self.pool.candidates[cid].final or {}
        return None if final.get(key) is None else float(final[key])

    def best_cid(self) -> str | None:
        best = self.pool.best()
        return None if best is None else best.cid

    def first_removed(self) -> str | None:
        """The candidate the first round removed first (the farthest from the reference)."""
        for r in self.pool.rounds:
            if r["removed"]:
                return r["removed"][0]
        return None

    # ------------------------------------------------------------ rounds
    def round_epoch(self, cid: str, r: int) -> int | None:
        """Candidate ``cid``'s own epoch count when round ``r`` ranked it (``None``: not ranked then)."""
        c = self.pool.candidates[cid]
        j = r - int(c.born_round)
        return int(c.epochs[j]) if 0 <= j < len(c.epochs) else None

    def ranked(self, r: int) -> list[RankedCandidate]:
        """Round ``r``'s ranking, best first."""
        decided = self.pool.rounds[r]
        removed = set(decided["removed"])
        why = decided.get("not_learning") or {}
        out = []
        for cid, value in decided["ranking"]:
            epoch = self.round_epoch(cid, r)
            out.append(RankedCandidate(cid, float(value), epoch, cid not in removed,
                                       self.val_curve(cid).get(epoch) if epoch is not None else None, why.get(cid)))
        return out

    # ----------------------------------------------------------- LS space
    @property
    def has_spectra(self) -> bool:
        return self.ls_fit is not None and self.ls_fit.reference is not None

    def reference_epochs(self) -> list[int]:
        """The epoch of each spectrum of the reference's history (0 = at initialisation, when saved)."""
        n = len(self.ls_fit.reference)
        epochs = self.config.reference_epochs or self.config.resolved_max_epochs()
        first = 0 if n == epochs + 1 else max(1, epochs - n + 1)
        return list(range(first, first + n))

    def spectra(self, cid: str) -> dict[int, np.ndarray]:
        """Epoch -> spectrum (N,) of candidate ``cid`` at each boundary it reported."""
        known = self.ls_fit.spectra.get(cid, {}) if self.ls_fit is not None else {}
        return {int(e): np.asarray(s, dtype=np.float64) for e, s in sorted(known.items())}

    def round_space(self, r: int) -> RoundSpace:
        """The embedding round ``r`` was ranked in (see the module docstring)."""
        space = self.ls_fit.space
        histories, epochs = {}, {}
        for entry in self.ranked(r):
            spectra = self.spectra(entry.cid)
            epochs[entry.cid] = [e for e in spectra if entry.epoch is None or e <= entry.epoch]
            histories[entry.cid] = np.stack([spectra[e] for e in epochs[entry.cid]])
        dist, coords = ls_distances(self.ls_fit.reference, histories, embedding=space.embedding,
                                    metric=space.distance, neg_inf_fill=NEG_INF_RULES[self.ls_fit.fit], seed=space.seed)
        return RoundSpace(coords[REFERENCE], {c: coords[c] for c in histories}, epochs, dist)

    def common_distances(self) -> dict[str, dict[int, float]]:
        """cid -> {epoch: distance to the reference's last spectrum}, all in one embedding of every spectrum."""
        space = self.ls_fit.space
        histories = {cid: self.spectra(cid) for cid in self.pool.candidates if self.spectra(cid)}
        arrays = {cid: np.stack(list(h.values())) for cid, h in histories.items()}
        if not arrays:
            return {}
        points, _ = embed_histories(self.ls_fit.reference, arrays, embedding=space.embedding,
                                    neg_inf_fill=NEG_INF_RULES[self.ls_fit.fit], seed=space.seed)
        ref = points[REFERENCE][-1]
        return {cid: {e: point_distance(ref, p, space.distance) for e, p in zip(h, points[cid])}
                for cid, h in histories.items()}

    # ------------------------------------------------------------- times
    def slots(self) -> int:
        """Trials that ran at once: as the search started it, else the most epochs the log shows overlapping."""
        for e in self.events_of("search_start"):
            if e.get("slots"):
                return int(e["slots"])
        marks = sorted([(r["start"], 1) for r in self.epoch_log] + [(r["time"], -1) for r in self.epoch_log])
        depth = best = 0
        for _, step in marks:
            depth += step
            best = max(best, depth)
        return max(1, best)
