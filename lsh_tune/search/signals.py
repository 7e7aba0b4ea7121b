"""Ranking signals: what a round of the pool ranks its candidates by, one small object each (Ray-free).

Every :class:`RankingSignal` says, in one place:

* ``name`` — its ``--metric`` name (the key of :data:`SIGNALS`), ``label`` and :meth:`~RankingSignal.describe`
  — what the views call it;
* ``needs_reference`` — whether a dense reference must be trained and every trial computes its
  Lyapunov spectrum (LS) each epoch (the reference's cost, the LS rows a corpus must hold);
* ``result_keys`` — what a trial's round-boundary report must carry
  (:mod:`lsh_tune.search.keys`), ``reported_key`` — the reported value it ranks when the ledger
  computes nothing itself (no pool-wide LS fit);
* :meth:`~RankingSignal.values` — the values of one round (lower = better), from the reports and
  the ledger's LS fit (:class:`~lsh_tune.search._ls_fit.PoolLSFit`).

The registry :data:`SIGNALS` (name → class) gives ``--metric`` its choices (:data:`RANKING_METRICS`);
:func:`signal_for` builds the signal of a :class:`~lsh_tune.search.config.SearchConfig` or a
:class:`~lsh_tune.table.ReplaySettings` from their ``metric`` and ``ls_*`` fields. A new signal is
one subclass with :func:`register_signal`, and a test.

Candidates that are not learning (:func:`not_learning`) are ranked behind every candidate that is,
whatever their signal value; the pool applies it to every signal (:mod:`lsh_tune.search._pool`).
A candidate is not learning at a round boundary when

* its validation or training loss (or perplexity) is not finite; or
* its validation perplexity is above ``untrained_ppl``, what an untrained model scores: the dense
  reference's at initialisation where the search knows it (a replay: the table's reference at epoch 0),
  else the vocabulary size V (the perplexity of a uniform prediction; a search ranked by loss trains no
  reference, and a live search does not evaluate its reference before training). On ``tables/bench``
  the references score 9,978 and 9,990 at epoch 0 for V = 10,000; or
* its validation perplexity rose by more than :data:`RISE_FACTOR` (2×, +0.69 nats per token) since its
  previous evaluation the pool saw (its previous round boundary). Why 2×: on ``tables/bench`` (96 runs,
  6 epochs) no run outside SET rises more than 1.04× from one epoch to the next, SET runs up to 2.22×
  (``ER-SET-magnitude-random-dr0.80`` seed 1, epoch 4: 774 → 1,715, the one run flagged; it ends at
  477 test perplexity, the best configuration at 305), while a diverging run rises by orders of
  magnitude (13,160,585 on the H200 run of issue 20).

Not the unigram perplexity: on ``tables/bench`` every run is still above it after epoch 1 (752–1,250
against 714). Among not-learning candidates the lower validation perplexity ranks first (their signal
value says little: a diverged spectrum can sit near the reference's), then the signal value, then the id.
"""
from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Mapping

from lsh_tune.errors import LSHUsageError, check_choice, check_int
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS
from lsh_tune.lyapunov.jacobians import CONVENTIONS
from lsh_tune.search._ls_fit import LS_FITS, NEG_INF_RULES, LSSpace, PoolLSFit
from lsh_tune.search.keys import LS_KEY, OWN_FIT_DISTANCE_KEY

__all__ = ["DEFAULT_METRIC", "RANKING_METRICS", "RISE_FACTOR", "SIGNALS", "LSDistance", "RankAverage", "RankingSignal",
           "RoundData", "ValLoss", "make_signal", "not_learning", "ppl_text", "register_signal", "signal_class", "signal_for",
           "signal_from_dict", "learning_rule_text", "ls_setting", "val_ppl_of"]

#: The LS distance's settings that a search (:class:`~lsh_tune.search.config.SearchConfig`) and a
#: replay (:class:`~lsh_tune.table.ReplaySettings`) both declare: default and command-line metadata,
#: declared once here (:func:`ls_setting`).
_LS_SETTINGS = {
    "ls_embedding": ("pca", {"choices": EMBEDDINGS, "help": "LS-space embedding"}),
    "ls_distance": ("l2", {"choices": METRICS, "help": "distance in LS space"}),
    "ls_fit": ("pool", {"choices": LS_FITS,
                        "help": "pool (rank in one LS space fitted on the whole pool), candidate (per candidate: Appendix B), or "
                                "authors (per candidate, against the reference at the same epoch, -inf -> 0)"}),
}


#: Named LS settings (``--ls-preset``), so that published results can be reproduced:
#:
#: * ``paper`` — Appendix B's equation: per candidate, a 2-D PCA of the dense reference's spectra and
#:   the candidate's history (``ls_fit=candidate``), L2 to the reference, the ``h`` convention (−inf
#:   exponents floored as in every fit but ``authors``; the paper sets them to 0);
#: * ``authors`` — the authors' code (``FATE4869/hyperpruning``, ``sources/util.py``,
#:   ``LE_distance_main``): per candidate at its epoch e, a 2-D PCA of the reference's epochs 0..e and
#:   its own, L2 to the reference *at the same epoch e*, −inf → 0 (``ls_fit=authors``), one QR over
#:   all layers (``ls_qr=joint``).
#:
#: A setting a preset names may be given too only with the preset's value.
LS_PRESETS: dict[str, dict[str, str]] = {
    "paper": {"ls_state": "h", "ls_embedding": "pca", "ls_distance": "l2", "ls_fit": "candidate"},
    "authors": {"ls_state": "h", "ls_embedding": "pca", "ls_distance": "l2", "ls_fit": "authors", "ls_qr": "joint"},
}


def ls_preset_field():
    """The dataclass field ``ls_preset`` (``None`` or a key of :data:`LS_PRESETS`)."""
    return field(default=None, metadata={
        "choices": tuple(LS_PRESETS),
        "help": "named LS settings: paper (Appendix B: per-candidate PCA, L2 to the reference) or authors (their "
                "code: reference at the same epoch, -inf -> 0, joint QR); sets the --ls-* options it names"})


def apply_ls_preset(settings: Any) -> None:
    """Set the LS fields of the frozen dataclass ``settings`` from its ``ls_preset`` (in ``__post_init__``).

    Fields the dataclass lacks (a replay has no ``ls_qr``: its spectra are the table's) are skipped.

    Raises:
        LSHUsageError: an unknown preset, or a field the preset names that was given another value
            than its default and the preset's.
    """
    preset = settings.ls_preset
    if preset is None:
        return
    check_choice("ls_preset", preset, tuple(LS_PRESETS))
    defaults = {f.name: f.default for f in fields(settings)}
    for name, value in LS_PRESETS[preset].items():
        if name not in defaults:
            continue
        given = getattr(settings, name)
        if given != value and given != defaults[name]:
            raise LSHUsageError(f"ls_preset={preset!r} sets {name}={value!r}, and {name}={given!r} was given; "
                                f"leave {name} out or drop the preset")
        object.__setattr__(settings, name, value)


def ls_setting(name: str):
    """The dataclass field of the LS setting ``name`` (``ls_embedding``, ``ls_distance`` or ``ls_fit``):
    its default and its ``--ls-*`` option's choices and help."""
    default, metadata = _LS_SETTINGS[name]
    return field(default=default, metadata=dict(metadata))


#: A candidate whose validation perplexity rose by more than this factor since its previous
#: evaluation is not learning (module docstring: why 2).
RISE_FACTOR = 2.0
#: The round-info keys whose non-finite value means the candidate is not learning.
_LOSS_KEYS = ("val_loss", "val_ppl", "train_loss")


@dataclass(frozen=True)
class RoundData:
    """What a round knows of the candidates it ranks.

    Attributes:
        epochs: cid -> its round-boundary epochs so far (of its own training), the last one this round's.
        reported: cid -> the value its trial reported under the signal's ``reported_key`` (``None``
            where it was not used: a pool-wide LS fit computes the values).
        info: cid -> its round info (``val_loss`` in nats per token, ``val_ppl``, ``density`` ...).
        ls_fit: the ledger's LS fit (the reference's and the candidates' spectra), ``None`` without one.
    """

    epochs: Mapping[str, list[int]]
    reported: Mapping[str, float | None] = field(default_factory=dict)
    info: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ls_fit: PoolLSFit | None = None


def _setting(settings: Any, name: str, default: Any) -> Any:
    """``settings[name]`` of a mapping, or ``settings.name`` of a config object; ``default`` if absent."""
    if settings is None:
        return default
    if isinstance(settings, Mapping):
        return settings.get(name, default)
    return getattr(settings, name, default)


class RankingSignal(abc.ABC):
    """Base class of the ranking signals (see the module docstring). Subclasses are frozen dataclasses.

    Class attributes:
        name: the ``--metric`` name.
        label: a short name for the views (``"LS distance"``).
        needs_reference: a dense reference must be trained; every trial computes its LS each epoch.
        result_keys: keys a round-boundary report must carry.
        reported_key: the reported value ranked when the ledger has no LS fit.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False
    result_keys: ClassVar[tuple[str, ...]] = ()
    reported_key: ClassVar[str] = ""

    @classmethod
    def from_settings(cls, settings: Any = None) -> "RankingSignal":
        """The signal of a config (``SearchConfig``, ``ReplaySettings``, or a mapping of their field names)."""
        return cls()

    def describe(self) -> str:
        """One line for views and reports: what is ranked, with its settings."""
        return self.label

    @abc.abstractmethod
    def values(self, data: RoundData) -> dict[str, float]:
        """The value of each candidate of ``data`` in this round: lower is better; +inf or NaN ranks
        behind every finite value.

        Raises:
            LSHUsageError: what the signal needs is missing (the message names the candidate and the key).
        """

    def make_fit(self, reference_history, directory=None) -> PoolLSFit | None:
        """The ledger's LS fit of this signal (``None``: it ranks without spectra).

        Args:
            reference_history: the dense reference's spectra (E_ref, N), nats per step, epoch 0 first
                (``None`` while its trial trains it).
            directory: where the fit keeps its files (``None``: in memory; the ledger sets it).
        """
        return None

    def to_dict(self) -> dict:
        """``{"name", ...settings}``: what the ledger's state saves (:func:`signal_from_dict`)."""
        return {"name": self.name, **(asdict(self) if hasattr(self, "__dataclass_fields__") else {})}


SIGNALS: dict[str, type[RankingSignal]] = {}


def register_signal(cls: type[RankingSignal]) -> type[RankingSignal]:
    """Add ``cls`` to :data:`SIGNALS` under ``cls.name`` (a class decorator).

    Raises:
        LSHUsageError: no name, or the name is taken by another class.
    """
    if not cls.name or (cls.name in SIGNALS and SIGNALS[cls.name] is not cls):
        raise LSHUsageError(f"ranking signal name {cls.name!r} is empty or taken; registered: {', '.join(SIGNALS)}")
    SIGNALS[cls.name] = cls
    return cls


def _reported(data: RoundData, key: str, what: str) -> dict[str, float]:
    out = {}
    for cid in data.epochs:
        value = data.reported.get(cid)
        if value is None:
            value = (data.info.get(cid) or {}).get(key)
        if value is None:
            raise LSHUsageError(f"candidate {cid!r} reported no {key!r} at epoch {data.epochs[cid][-1]} ({what})")
        out[cid] = float(value)
    return out


@register_signal
@dataclass(frozen=True)
class LSDistance(RankingSignal):
    """The distance of a candidate's LS to the dense reference's in an embedded LS space (paper §3, App. B).

    Args:
        state: the state the spectra are of: ``h`` (the paper's, c held fixed) or ``hc``.
        embedding: ``pca`` (paper), ``raw`` or ``tsne``.
        distance: ``l2`` (paper) or ``cosine``.
        fit: ``pool`` (one space per round over the reference and every ranked candidate), ``candidate``
            (one per candidate: the reference and its own history) or ``authors`` (per candidate, the
            reference at the same epoch, −inf → 0: :mod:`lsh_tune.search._ls_fit`).
        top: only the ``top`` leading exponents (``None``: all N).
        seed: t-SNE's random state.
    """

    name: ClassVar[str] = "ls"
    label: ClassVar[str] = "LS distance"
    needs_reference: ClassVar[bool] = True
    result_keys: ClassVar[tuple[str, ...]] = (LS_KEY, OWN_FIT_DISTANCE_KEY)
    reported_key: ClassVar[str] = OWN_FIT_DISTANCE_KEY

    state: str = "h"
    embedding: str = "pca"
    distance: str = "l2"
    fit: str = "pool"
    top: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("ls_state", self.state, CONVENTIONS)
        check_choice("ls_embedding", self.embedding, EMBEDDINGS)
        check_choice("ls_distance", self.distance, METRICS)
        check_choice("ls_fit", self.fit, LS_FITS)
        check_int("ls_top", self.top, 1, allow_none=True)
        check_int("seed", self.seed, 0)

    @classmethod
    def from_settings(cls, settings: Any = None) -> "LSDistance":
        return cls(state=_setting(settings, "ls_state", "h"), embedding=_setting(settings, "ls_embedding", "pca"),
                   distance=_setting(settings, "ls_distance", "l2"), fit=_setting(settings, "ls_fit", "pool"),
                   top=_setting(settings, "ls_top", None), seed=_setting(settings, "seed", 0))

    def space(self) -> LSSpace:
        return LSSpace(self.embedding, self.distance, self.seed)

    def make_fit(self, reference_history, directory=None) -> PoolLSFit:
        return PoolLSFit(reference_history, self.space(), directory, fit=self.fit)

    def describe(self) -> str:
        top = f", top {self.top}" if self.top else ""
        emb, dist = self.embedding.upper(), self.distance.upper()
        if self.fit == "authors":
            return (f"LS distance ({self.state}{top}, {emb} per candidate on the reference's epochs 0..e, {dist} to "
                    "the reference at the same epoch e, −inf → 0: the authors' code)")
        where = "fitted on the pool" if self.fit == "pool" else "per candidate"
        inf = "−inf → 0" if NEG_INF_RULES[self.fit] == 0.0 else "exponents floored at the fit's 5th percentile"
        return f"LS distance ({self.state}{top}, {emb} {where}, {dist} to the trained reference, {inf})"

    def values(self, data: RoundData) -> dict[str, float]:
        if data.ls_fit is None:
            return _reported(data, OWN_FIT_DISTANCE_KEY, "without a pool-wide LS fit the distance each trial "
                                                         "reports ranks the round")
        return data.ls_fit.distances(data.epochs)


@register_signal
@dataclass(frozen=True)
class ValLoss(RankingSignal):
    """The validation loss (nats per token) at the round boundary: the loss-based baseline."""

    name: ClassVar[str] = "loss"
    label: ClassVar[str] = "val loss"
    result_keys: ClassVar[tuple[str, ...]] = ("val_loss",)
    reported_key: ClassVar[str] = "val_loss"

    def describe(self) -> str:
        return "validation loss (nats per token)"

    def values(self, data: RoundData) -> dict[str, float]:
        return _reported(data, "val_loss", "the validation loss ranks the round")


def _ranks(values: Mapping[str, float]) -> dict[str, float]:
    """1-based ranks of ``values`` (ascending; +inf, then NaN, last; ties share their mean rank)."""
    def key(cid: str) -> tuple:
        v = values[cid]
        return (math.isnan(v), v if not math.isnan(v) else 0.0)

    order = sorted(values, key=key)
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and key(order[j + 1]) == key(order[i]):
            j += 1
        for cid in order[i:j + 1]:
            out[cid] = (i + j) / 2 + 1
        i = j + 1
    return out


@register_signal
@dataclass(frozen=True)
class RankAverage(RankingSignal):
    """The hybrid: the mean of a candidate's rank by LS distance and its rank by validation loss in its
    round (1 = best in each; value in [1, n]; the pool breaks ties by candidate id).

    The LS part is an :class:`LSDistance` (its settings: ``ls``); the loss part is ``val_loss`` from
    the round info. Where the two disagree, neither decides alone: a candidate whose spectrum sits
    near the reference's but whose loss is poor (or the other way round) lands mid-pool.
    """

    name: ClassVar[str] = "hybrid"
    label: ClassVar[str] = "LS/loss rank average"
    needs_reference: ClassVar[bool] = True
    result_keys: ClassVar[tuple[str, ...]] = (LS_KEY, OWN_FIT_DISTANCE_KEY, "val_loss")
    reported_key: ClassVar[str] = OWN_FIT_DISTANCE_KEY

    ls: LSDistance = LSDistance()

    @classmethod
    def from_settings(cls, settings: Any = None) -> "RankAverage":
        return cls(LSDistance.from_settings(settings))

    def make_fit(self, reference_history, directory=None) -> PoolLSFit:
        return self.ls.make_fit(reference_history, directory)

    def describe(self) -> str:
        return f"mean rank by {self.ls.describe()} and by validation loss"

    def values(self, data: RoundData) -> dict[str, float]:
        ls = _ranks(self.ls.values(data))
        loss = _ranks(_reported(RoundData(data.epochs, {}, data.info), "val_loss", "the hybrid ranks it"))
        return {cid: (ls[cid] + loss[cid]) / 2 for cid in data.epochs}

    def to_dict(self) -> dict:
        return {"name": self.name, "ls": self.ls.to_dict()}


#: ``--metric`` choices: the registered signals' names.
RANKING_METRICS = tuple(SIGNALS)

#: The ranking signal of a search and a replay when ``--metric`` is not given: the hybrid
#: (:class:`RankAverage`) of the ``h``/PCA/L2 LS distance with the pool-wide fit and the validation
#: loss. Chosen on ``tables/bench`` (seeds 0 and 1: every candidate default replayed over LSH-TPE and
#: grid × pools 8/12/16/24 × E = 1/2/3, ``benchmarks/ranking_defaults.py``) and confirmed on
#: ``tables/bench_seed2``, a seed the choice never saw: mean chosen rank 5.00 and 4.90 over the grid
#: against the loss's 7.15 and 6.48 and the LS distance alone's 5.03 and 5.08 (``BENCHMARKS.md``,
#: "Ranking signals"). Unlike ``hc`` settings it applies to every model (RHN has no cell state).
DEFAULT_METRIC = "hybrid"


def signal_class(name: str) -> type[RankingSignal]:
    """The registered signal called ``name``.

    Raises:
        LSHUsageError: no such signal (the message names the registered ones).
    """
    check_choice("metric", name, tuple(SIGNALS))
    return SIGNALS[name]


def make_signal(name: str, settings: Any = None) -> RankingSignal:
    """The signal ``name`` with the ``ls_*``/``seed`` fields of ``settings`` (a config object or a mapping)."""
    return signal_class(name).from_settings(settings)


def signal_for(settings: Any) -> RankingSignal:
    """The signal of ``settings``' ``metric`` (a ``SearchConfig``, a ``ReplaySettings`` or a mapping)."""
    return make_signal(_setting(settings, "metric", DEFAULT_METRIC), settings)


def signal_from_dict(d: Mapping[str, Any]) -> RankingSignal:
    """The signal a ledger's state saved (:meth:`RankingSignal.to_dict`).

    Raises:
        LSHUsageError: an unknown name or setting.
    """
    cls = signal_class(d.get("name", ""))
    params = {k: v for k, v in d.items() if k != "name"}
    if cls is RankAverage:
        return RankAverage(LSDistance(**{k: v for k, v in params.get("ls", {}).items() if k != "name"}))
    try:
        return cls(**params)
    except TypeError as e:
        raise LSHUsageError(f"saved ranking signal {dict(d)!r} does not fit {cls.__name__}: {e}") from None


def ppl_text(value: float) -> str:
    """A perplexity for a sentence: ``774``, ``10,000``, ``1.3e7``, ``nan``."""
    if not math.isfinite(value):
        return str(value)
    if value >= 1e5:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:,.0f}"


def val_ppl_of(info: Mapping[str, Any]) -> float | None:
    """The validation perplexity of round info: ``val_ppl``, else exp(``val_loss``) (+inf past 700 nats
    per token, where exp overflows); ``None`` when it has neither."""
    if info.get("val_ppl") is not None:
        return float(info["val_ppl"])
    if info.get("val_loss") is not None:
        loss = float(info["val_loss"])
        return math.exp(loss) if loss < 700 else math.inf  # exp overflows past ~709 nats
    return None


def learning_rule_text(untrained_ppl: float | None) -> str:
    """The not-learning rule in one phrase, for the views (:func:`not_learning`)."""
    above = "" if untrained_ppl is None else f"val ppl above {ppl_text(untrained_ppl)} (an untrained model's), "
    return (f"not learning (ranked behind every learning candidate): a non-finite loss, {above}or val ppl more "
            f"than {RISE_FACTOR:g}× its previous round's")


def not_learning(info: Mapping[str, Any], previous_ppl: float | None = None,
                 untrained_ppl: float | None = None) -> str | None:
    """Why a candidate is not learning at its round boundary, or ``None`` when it is (module docstring).

    Args:
        info: its round info: ``val_loss`` (nats per token), ``val_ppl``, ``train_loss`` where known.
        previous_ppl: its validation perplexity at its previous round boundary (``None``: its first).
        untrained_ppl: what an untrained model scores (``None``: that test is off).

    >>> not_learning({"val_ppl": 1.3e7}, None, 10000.0)
    'val ppl 1.3e7 > 10,000 at initialisation'
    >>> not_learning({"val_ppl": 1715.0}, 774.0, 10000.0)
    'val ppl 1,715 > 2 × 774 at its previous evaluation'
    >>> not_learning({"val_loss": float("nan")}) , not_learning({"val_ppl": 700.0}, 774.0, 10000.0)
    ('non-finite val loss (nan)', None)
    """
    for key in _LOSS_KEYS:
        value = info.get(key)
        if value is not None and not math.isfinite(float(value)):
            return f"non-finite {key.replace('_', ' ')} ({float(value)})"
    ppl = val_ppl_of(info)
    if ppl is None:
        return None
    if not math.isfinite(ppl):
        return f"non-finite val ppl ({ppl})"
    if untrained_ppl is not None and ppl > untrained_ppl:
        return f"val ppl {ppl_text(ppl)} > {ppl_text(untrained_ppl)} at initialisation"
    if previous_ppl is not None and math.isfinite(previous_ppl) and ppl > RISE_FACTOR * previous_ppl:
        return f"val ppl {ppl_text(ppl)} > {RISE_FACTOR:g} × {ppl_text(previous_ppl)} at its previous evaluation"
    return None
