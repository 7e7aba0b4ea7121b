"""A search's trained epochs as data: one row per candidate and epoch, and each candidate with its rows.

Ray-free and read-only, from what :class:`~lsh_tune.search.views.history.SearchHistory` reads back
(local directory or object-store URI alike): the epoch log (``epochs/``, one record per trained
epoch, :func:`~lsh_tune.search.candidate.read_epoch_log`), the ``epoch`` events of ``events.jsonl``
and the ledger's state (``lsh/state.json``: configs, statuses, rounds and their rankings).
:meth:`lsh_tune.SearchResult.dataframe` and :meth:`lsh_tune.SearchResult.candidates` are these.

Rows: every (cid, epoch) that the epoch log or the events know, or that a round ranked; once each
(an epoch trained twice — a trial that fell back to an older checkpoint — is its later record).
Candidates only: the dense reference is no candidate (its scores: ``SearchResult.reference``; its
epochs are logged in the reference cache). Sorted by cid, then epoch.

Columns (:func:`columns`), ``NaN``/``<NA>``/``None`` where not known:

* ``cid``; ``config/<name>`` per hyperparameter (as Ray Tune's ``ResultGrid.get_dataframe()``);
* ``epoch`` — the candidate's own epoch count (1 = after its first epoch of training);
* ``train_loss``, ``val_loss``, ``test_loss`` — mean NLL in nats/token (``test_loss`` at a finalist's
  last epoch only); ``train_ppl``, ``val_ppl``, ``test_ppl`` — perplexities per token, exp(loss);
  ``density`` — the fraction of weights kept; ``lr`` — the learning rate;
* ``round``, ``rank``, ``ranking_value``, ``decision`` — at an epoch where a round ranked the
  candidate: the round (0-based), its place in that round's ranking (1 = best), the value of the
  search's ranking metric (``SearchConfig.metric``: LS distance to the dense reference, or the
  validation loss; lower is better) and what the round decided (:data:`DECISIONS`: ``kept``,
  ``removed``, or ``finalist`` — kept by the round that ended halving); empty at other epochs;
* ``status``, ``born_round``, ``removed_round`` — the candidate's, repeated on each of its rows:
  ``active``/``final``/``finished``/``removed``/``failed``, the round after which it was generated
  (0 = the initial pool), the round that removed it (or in which it failed);
* ``hostname``, ``node_ip``, ``node_id`` (Ray's), ``trial_id``, ``pid``, ``gpu_ids`` — where the epoch ran;
* ``start_time``, ``end_time`` — wall clock at the epoch's start and end (s since the Unix epoch);
  ``epoch_time_s`` — seconds of training + validation (the trainer's own clock); ``ls_time_s`` —
  seconds of the epoch's Lyapunov spectrum (metric ``ls``).

An epoch log written before the losses, ``hostname`` and ``node_ip`` were recorded in it
(:data:`~lsh_tune.search.candidate.EPOCH_RECORD_METRICS`) gives the validation loss and perplexity,
density and times from the events instead, and leaves the rest empty.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsh_tune.search.candidate import EPOCH_RECORD_METRICS
from lsh_tune.train import perplexity

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from lsh_tune.search.views.history import SearchHistory

__all__ = ["CONFIG_PREFIX", "DECISIONS", "CandidateResult", "candidate_results", "columns", "epoch_frame",
           "epoch_rows"]

#: Prefix of the hyperparameters' columns (Ray Tune's, ``ResultGrid.get_dataframe()``).
CONFIG_PREFIX = "config/"
#: What a round decided for a candidate it ranked.
KEPT, REMOVED, FINALIST = "kept", "removed", "finalist"
DECISIONS = (KEPT, REMOVED, FINALIST)

_METRICS = ("train_loss", "val_loss", "test_loss", "train_ppl", "val_ppl", "test_ppl", "density", "lr")
_ROUND = ("round", "rank", "ranking_value", "decision")
_CANDIDATE = ("status", "born_round", "removed_round")
_NODE = ("hostname", "node_ip", "node_id", "trial_id", "pid", "gpu_ids")
_TIMES = ("start_time", "end_time", "epoch_time_s", "ls_time_s")
#: What an ``epoch`` event gives a row (an epoch log without metrics: the only source of these).
_EVENT_FIELDS = ("val_loss", "val_ppl", "density", "epoch_time_s", "ls_time_s")
#: The epoch log's names of the row's columns where they differ.
_LOG_NAMES = {"start": "start_time", "time": "end_time"}
_LOG_FIELDS = (*EPOCH_RECORD_METRICS, *_NODE, *_LOG_NAMES)
_INTS = ("epoch", "round", "rank", "born_round", "removed_round", "pid")
_FLOATS = (*_METRICS, "ranking_value", "start_time", "end_time", "epoch_time_s", "ls_time_s")


@dataclass(frozen=True)
class CandidateResult:
    """One candidate of a search: what it was, what became of it, and every epoch it trained.

    Attributes:
        cid: its id (``c000``, ``c001``, ... in order of creation).
        config: its hyperparameters (``sparse_init``, ``death``, ...).
        status: ``active`` | ``final`` | ``finished`` | ``removed`` | ``failed`` (a finished search:
            ``finished`` for the finalists, ``removed`` or ``failed`` for the others).
        born_round: the round after which it was generated (0 = the initial pool).
        removed_round: the round that removed it (or in which its trial failed); ``None`` otherwise.
        final: a finalist's final metrics as the ledger recorded them (``val_ppl``, ``test_ppl``,
            ``density``, ...), else ``None``.
        history: its rows of :func:`epoch_frame`, one ``{column: value}`` per epoch, oldest first
            (missing values as ``None``; ``()`` when it never trained).
    """

    cid: str
    config: dict[str, Any]
    status: str
    born_round: int
    removed_round: int | None
    final: dict[str, Any] | None
    history: tuple[dict[str, Any], ...]

    @property
    def epochs(self) -> int:
        """How many epochs it trained (its last epoch; 0 when it never trained)."""
        return int(self.history[-1]["epoch"]) if self.history else 0


def _config_names(history: "SearchHistory") -> list[str]:
    """The hyperparameters' names, in the order of the candidates' configs."""
    names: dict[str, None] = {}
    for c in history.pool.candidates.values():
        names.update(dict.fromkeys(c.config))
    return list(names)


def columns(history: "SearchHistory") -> list[str]:
    """The columns of :func:`epoch_frame` for ``history`` (see the module docstring), in order."""
    config = [CONFIG_PREFIX + name for name in _config_names(history)]
    return ["cid", *config, "epoch", *_METRICS, *_ROUND, *_CANDIDATE, *_NODE, *_TIMES]


def _round_marks(history: "SearchHistory") -> dict[tuple[str, int], dict[str, Any]]:
    """(cid, epoch) -> ``round``, ``rank``, ``ranking_value``, ``decision`` of every ranked epoch."""
    marks = {}
    for decided in history.pool.rounds:
        r, removed = int(decided["round"]), set(decided["removed"])
        for rank, (cid, value) in enumerate(decided["ranking"], start=1):
            epoch = history.round_epoch(cid, r)
            if epoch is None:
                continue
            decision = REMOVED if cid in removed else FINALIST if decided["done"] else KEPT
            marks[(cid, epoch)] = {"round": r, "rank": rank, "ranking_value": float(value), "decision": decision}
    return marks


def _known(history: "SearchHistory") -> dict[tuple[str, int], dict[str, Any]]:
    """(cid, epoch) -> what the events, then the epoch log (which wins), say of that epoch."""
    known: dict[tuple[str, int], dict[str, Any]] = {}
    for e in history.events_of("epoch"):  # oldest first: an epoch trained again ends with its later values
        fields = known.setdefault((str(e["cid"]), int(e["epoch"])), {})
        fields.update({k: e[k] for k in _EVENT_FIELDS if e.get(k) is not None})
    for rec in sorted(history.epoch_log, key=lambda rec: float(rec["time"])):
        fields = known.setdefault((str(rec["cid"]), int(rec["epoch"])), {})
        fields.update({_LOG_NAMES.get(k, k): rec[k] for k in _LOG_FIELDS if rec.get(k) is not None})
    return known


def epoch_rows(history: "SearchHistory") -> list[dict[str, Any]]:
    """One ``{column: value}`` per candidate epoch (see the module docstring), sorted by cid, then epoch."""
    names, header = _config_names(history), columns(history)
    marks = _round_marks(history)
    known = _known(history)
    for key in marks:
        known.setdefault(key, {})
    rows = []
    for cid, epoch in sorted(known):
        fields, candidate = known[(cid, epoch)], history.pool.candidates.get(cid)
        row: dict[str, Any] = dict.fromkeys(header)
        row.update(cid=cid, epoch=epoch, **fields, **marks.get((cid, epoch), {}))
        if candidate is not None:
            row.update({CONFIG_PREFIX + n: candidate.config.get(n) for n in names})
            row.update(status=candidate.status, born_round=int(candidate.born_round),
                       removed_round=candidate.removed_round)
        for split in ("train", "val", "test"):
            if row[f"{split}_ppl"] is None and row[f"{split}_loss"] is not None:
                row[f"{split}_ppl"] = perplexity(float(row[f"{split}_loss"]))
        rows.append(row)
    return rows


def epoch_frame(history: "SearchHistory") -> "pd.DataFrame":
    """:func:`epoch_rows` as a :class:`pandas.DataFrame` with the columns of :func:`columns`: floats
    ``float64`` (``NaN`` where not known), counts ``Int64`` (``<NA>``), text as pandas infers it."""
    import pandas as pd

    frame = pd.DataFrame.from_records(epoch_rows(history), columns=columns(history))
    for name in _FLOATS:
        frame[name] = frame[name].astype("float64")
    for name in _INTS:
        frame[name] = frame[name].astype("Int64")
    return frame


def candidate_results(history: "SearchHistory") -> tuple[CandidateResult, ...]:
    """Every candidate of the ledger, in order of creation, with its rows of :func:`epoch_rows`."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in epoch_rows(history):
        rows.setdefault(row["cid"], []).append(row)
    return tuple(CandidateResult(c.cid, dict(c.config), c.status, int(c.born_round), c.removed_round,
                                 None if c.final is None else dict(c.final), tuple(rows.get(c.cid, ())))
                 for c in history.pool.candidates.values())
