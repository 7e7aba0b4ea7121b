"""The search ledger: pool + refill generator + persistence, shared by scheduler and searcher.

Ray-free. One :class:`SearchLedger` is given to both :class:`~lsh_tune.search.LSHScheduler` and
:class:`~lsh_tune.search.LSHSearcher` at construction: an explicit shared object, not state
passed through Tune. The adapters use only the ledger's methods, each of which holds the
ledger lock (Tune calls scheduler and searcher from one thread, but the lock keeps that an
implementation detail of Tune). Every change is written atomically to
``<experiment>/lsh/state.json`` (:data:`~lsh_tune.search.layout.STATE_FILE`, in ``lsh/``: Tune's
restore would overwrite a top-level file with a stale copy) because Ray restores searcher state
but not scheduler state (ray-project/ray#30838).

Pickling a ledger stores only its path; unpickling re-opens it through a per-process registry,
so the scheduler and the searcher that ``Tuner.restore`` unpickles separately share one object
again, loaded from the latest state file.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from lsh_tune.errors import LSHUsageError
from lsh_tune.search._generators import RefillGenerator, generator_class, make_generator
from lsh_tune.search._ls_fit import PoolLSFit
from lsh_tune.search._pool import DONE, CandidatePool, PoolConfig, RoundDecision
from lsh_tune.search._reference import DenseReference
from lsh_tune.search.layout import STATE_FILE
from lsh_tune.search.signals import RankingSignal, RoundData, make_signal, signal_class, signal_from_dict
from lsh_tune.space import SearchSpace
from lsh_tune.storage import Storage

__all__ = ["SearchLedger", "STATE_FILE"]

STATE_VERSION = 1
_REGISTRY: dict[str, "SearchLedger"] = {}
_LOCK = threading.RLock()


class SearchLedger:
    """Pool, generator and the per-session bookkeeping of which candidates have a Tune trial.

    Args:
        pool: the candidate pool.
        generator: the refill generator.
        directory: experiment storage (a directory, an object-store URI or a
            :class:`~lsh_tune.storage.Storage`; state in ``lsh/state.json``) (``None``: in memory only).
        meta: extra JSON metadata saved with the state (hpo name, generator kwargs, ...).
        ls_fit: when set, the candidates' spectra (``on_boundary(..., spectrum=)``) from which the
            ranking signal (:attr:`signal`, :mod:`lsh_tune.search.signals`) computes a round's values
            when it closes; values reported with a boundary are then not used. A fit without a
            reference history yet keeps every round open until :meth:`set_reference` (the dense
            reference is a trial of the search, issued first as
            :data:`~lsh_tune.search.keys.REFERENCE_CID`; its lifecycle and progress are
            :attr:`reference`'s, a :class:`~lsh_tune.search._reference.DenseReference`).
    """

    def __init__(self, pool: CandidatePool, generator: RefillGenerator,
                 directory: Storage | str | os.PathLike | None, meta: dict | None = None,
                 ls_fit: PoolLSFit | None = None) -> None:
        self.pool = pool
        self.generator = generator
        self.storage = None if directory is None else Storage.of(directory)
        self.directory = None if self.storage is None else self.storage.uri  # the registry key
        self.meta = dict(meta or {})
        self.ls_fit = ls_fit
        #: What the rounds rank by (:mod:`lsh_tune.search.signals`; saved as ``meta["signal"]``).
        self.signal = _signal_of(self.meta, pool.config.metric, ls_fit)
        self.reference = DenseReference(ls_fit, self.meta)
        self._issued: set[str] = set()   # candidates that got (or found) a trial in this process

    # ----------------------------------------------------------------- creation
    @classmethod
    def create(cls, config: PoolConfig, hpo: str, space: SearchSpace, directory: Storage | str | os.PathLike | None,
               ls_fit: PoolLSFit | None = None, reference_source: dict | None = None,
               signal: RankingSignal | None = None, **generator_kwargs: Any) -> "SearchLedger":
        """A fresh ledger with the generator's initial pool; saved at once when ``directory`` is set.

        ``ls_fit`` (signals that need a reference only) holds the spectra the rounds are ranked on;
        its reference history is saved beside the state. ``signal``: what the rounds rank by (its name
        must be ``config.metric``; default: that signal with the settings of ``ls_fit``).
        ``reference_source`` (``{"cache":
        location, "key": key}``) is where :meth:`load_reference` finds a reference still in training.

        Raises:
            LSHUsageError: the directory already holds a search state (resume it instead), ``hpo``
                does not match ``config`` (generates/bracketed), or ``ls_fit``/``signal`` do not fit ``config.metric``.
        """
        generator = make_generator(hpo, space, config.seed, **generator_kwargs)
        if config.generates != generator.generates or config.bracketed != generator.bracketed:
            raise LSHUsageError(f"PoolConfig(generates={config.generates}, bracketed={config.bracketed}) "
                                f"does not match hpo={hpo!r}; use SearchLedger.pool_config_for()")
        store = None if directory is None else Storage.of(directory)
        if store is not None and store.is_file(STATE_FILE):
            raise LSHUsageError(f"{store.uri_of(STATE_FILE)} exists: resume that search (--resume) "
                                "or choose another --name")
        if ls_fit is not None and not signal_class(config.metric).needs_reference:
            raise LSHUsageError(f"an LS fit ranks by LS distance; metric={config.metric!r} needs no spectra")
        if signal is not None and signal.name != config.metric:
            raise LSHUsageError(f"signal {signal.name!r} does not match metric={config.metric!r}")
        pool = CandidatePool(config, generator.initial(config.pool_size))
        meta = {"hpo": hpo, "space": space.to_dict(), "generator_kwargs": generator_kwargs,
                "ls_fit": None if ls_fit is None else ls_fit.meta()}
        meta["signal"] = (signal or _signal_of(meta, config.metric, ls_fit)).to_dict()
        if reference_source is not None:
            meta["reference"] = dict(reference_source)
        if ls_fit is not None and store is not None:
            ls_fit.persist_in(store)
        ledger = cls(pool, generator, store, meta, ls_fit)
        ledger.save()
        if ledger.directory is not None:
            with _LOCK:
                _REGISTRY[ledger.directory] = ledger
        return ledger

    @staticmethod
    def pool_config_for(hpo: str, **kwargs: Any) -> PoolConfig:
        """A :class:`PoolConfig` whose ``generates``/``bracketed`` match the generator ``hpo``."""
        gen = generator_class(hpo)
        return PoolConfig(generates=gen.generates, bracketed=gen.bracketed, **kwargs)

    @classmethod
    def load(cls, directory: Storage | str | os.PathLike) -> "SearchLedger":
        """Read ``<directory>/lsh/state.json`` (no registry)."""
        store = Storage.of(directory)
        path = store.uri_of(STATE_FILE)
        try:
            d = store.read_json(STATE_FILE)
        except (OSError, ValueError) as e:
            raise LSHUsageError(f"cannot read search state {path!r}: {e}") from None
        if d.get("version") != STATE_VERSION:
            raise LSHUsageError(f"{path}: state version {d.get('version')!r}, expected {STATE_VERSION}")
        ls_fit = PoolLSFit.load(store, d["meta"]["ls_fit"]) if d["meta"].get("ls_fit") else None
        return cls.from_state_dict(d, store, ls_fit)

    @classmethod
    def from_state_dict(cls, state: dict, directory: Storage | str | os.PathLike | None,
                        ls_fit: PoolLSFit | None = None) -> "SearchLedger":
        """The ledger of a :meth:`state_dict` (pool, and a generator rebuilt from the saved meta)."""
        meta = state["meta"]
        space = SearchSpace.from_dict(meta["space"])
        pool = CandidatePool.from_state_dict(state["pool"])
        generator = make_generator(meta["hpo"], space, pool.config.seed, **meta.get("generator_kwargs", {}))
        return cls(pool, generator, directory, meta, ls_fit)

    @classmethod
    def open(cls, directory: Storage | str | os.PathLike) -> "SearchLedger":
        """The process-wide ledger of ``directory`` (loaded from its storage on first use)."""
        store = Storage.of(directory)
        with _LOCK:
            if store.uri not in _REGISTRY:
                _REGISTRY[store.uri] = cls.load(store)
            return _REGISTRY[store.uri]

    @staticmethod
    def forget(directory: str | os.PathLike) -> None:
        """Drop ``directory`` from the registry (tests; a later :meth:`open` reloads the file)."""
        with _LOCK:
            _REGISTRY.pop(Storage.of(directory).uri, None)

    def __reduce__(self):
        if self.directory is None:
            return (_rebuild_in_memory, (self.state_dict(), self.ls_fit))
        self.save()
        return (_open_ledger, (self.directory,))

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "meta": self.meta, "pool": self.pool.state_dict()}

    def save(self) -> None:
        """Write the state file all-or-nothing (no-op in memory)."""
        if self.storage is not None:
            self.storage.write_json(STATE_FILE, self.state_dict())

    # --------------------------------------------------------------- queries
    @property
    def metric_name(self) -> str:
        """The name of what rounds rank by (:attr:`signal`; :data:`~lsh_tune.search.signals.RANKING_METRICS`)."""
        return self.pool.config.metric

    @property
    def ranks_by_pool_fit(self) -> bool:
        """True when the ledger computes each round's values (pool-wide LS fit over the spectra)."""
        return self.ls_fit is not None

    def is_alive(self, cid: str) -> bool:
        """Whether candidate ``cid`` is still active or a finalist (the reference: still needed)."""
        with _LOCK:
            if self.reference.owns(cid):
                return self.reference.needed
            return self.pool.candidates[cid].alive

    def is_released(self, cid: str) -> bool:
        """Whether a paused trial of ``cid`` may run again (its round was decided; the reference always)."""
        with _LOCK:
            return self.reference.owns(cid) or self.pool.released(cid)

    def action(self, cid: str, epoch: int | None = None) -> str:
        """``continue``, ``pause`` or ``stop`` for a trial of ``cid`` (see :meth:`CandidatePool.action`);
        the reference's trial always continues."""
        with _LOCK:
            return "continue" if self.reference.owns(cid) else self.pool.action(cid, epoch)

    def status_counts(self) -> dict[str, int]:
        """Number of candidates per status (``active``, ``final``, ``removed`` ...)."""
        with _LOCK:
            counts: dict[str, int] = {}
            for c in self.pool.candidates.values():
                counts[c.status] = counts.get(c.status, 0) + 1
            return counts

    def progress(self) -> tuple[int, str]:
        """(decided rounds, phase)."""
        with _LOCK:
            return self.pool.round, self.pool.phase

    # ------------------------------------------------------------ operations
    def on_boundary(self, cid: str, epoch: int, value: float | None, info: dict | None = None,
                    spectrum: list[float] | None = None,
                    spectra: dict[int, list[float]] | None = None) -> RoundDecision | None:
        """Record a round boundary; close the round when the pool is complete. Saves on change.

        Args:
            cid, epoch: the candidate and its own epoch count at the boundary.
            value: its metric; required unless :attr:`ranks_by_pool_fit`, where it is not used.
            info: extras kept as the candidate's latest round info.
            spectrum: its LS at ``epoch`` (N exponents); required when :attr:`ranks_by_pool_fit`
                unless ``spectra`` holds it.
            spectra: its LS at every epoch since its previous boundary (epoch 0 included in its
                first round), ``{epoch: spectrum}``: the per-epoch history the fit ranks on.

        Raises:
            LSHUsageError: ``spectrum`` missing although the ledger ranks with a pool-wide fit, or
                ``value`` missing although it does not.
        """
        with _LOCK:
            if self.ls_fit is not None:
                for e, s in sorted((spectra or {}).items()):
                    self.ls_fit.add(cid, int(e), s)
                if spectrum is None and int(epoch) not in {int(e) for e in (spectra or {})}:
                    raise LSHUsageError(f"candidate {cid!r} reported no LS at epoch {epoch}; the pool-wide LS "
                                        "fit needs every candidate's spectrum")
                if spectrum is not None:
                    self.ls_fit.add(cid, epoch, spectrum)
                value = None
            elif value is None:
                raise LSHUsageError(f"candidate {cid!r} reported no {self.metric_name} value at epoch {epoch}")
            changed = self.pool.record(cid, epoch, value, info)
            decision = self._close_round_if_ready()
            if changed or decision is not None:
                self.save()
            return decision

    def _close_round_if_ready(self) -> RoundDecision | None:
        """Decide the open round once every active candidate reported and the reference is known: the
        signal computes the round's values (:meth:`RankingSignal.values`), then the pool ranks."""
        if not self.pool.ready() or self.needs_reference:
            return None
        active = self.pool.active()
        data = RoundData({c.cid: c.epochs + [c.pending[0]] for c in active}, {c.cid: c.pending[1] for c in active},
                         {c.cid: c.round_info() for c in active}, self.ls_fit)
        self.pool.rescore(self.signal.values(data))
        return self.pool.decide(self._generate)

    def _generate(self, n: int) -> list[dict]:
        existing = [c.config for c in self.pool.candidates.values()]
        return self.generator.refill(n, self.pool.observations(), existing, self.pool.round)

    def on_final(self, cid: str, metrics: dict) -> None:
        with _LOCK:
            self.pool.record_final(cid, metrics)
            self.save()

    def on_failed(self, cid: str, *, retries: int = 0) -> RoundDecision | None:
        """A trial of ``cid`` errored for good (Tune will not restart it).

        While the candidate has re-issues left (at most ``retries`` over the whole search, counted
        in the saved state), it is handed out again (:meth:`next_to_issue`) as a new trial that
        resumes from its newest state and ``None`` is returned: Tune restarts a trial only when it
        fails while RUNNING, not when its worker dies while it is PENDING or being unpaused (a lost
        node). Otherwise the candidate is dropped and the round closes if that completes it.
        """
        with _LOCK:
            if self.reference.owns(cid):
                if self.reference.on_failed(retries):
                    self.save()
                return None
            reissued = self.meta.setdefault("reissued", {})
            if self.pool.candidates[cid].alive and reissued.get(cid, 0) < retries:
                reissued[cid] = reissued.get(cid, 0) + 1
                self._issued.discard(cid)
                self.save()
                return None
            self.pool.mark_failed(cid)
            decision = self._close_round_if_ready()
            self.save()
            return decision

    def bind(self, cid: str) -> None:
        """A Tune trial for ``cid`` exists in this process (new or restored)."""
        with _LOCK:
            if self.reference.owns(cid):
                self.reference.bind()
            else:
                self._issued.add(cid)

    def next_to_issue(self) -> tuple[str, dict] | None:
        """The first live candidate without a trial in this process, marked as issued; the dense
        reference (:data:`REFERENCE_CID`, empty config) first while it is needed."""
        with _LOCK:
            if self.reference.issue():
                return self.reference.cid, {}
            for c in self.pool.candidates.values():
                if c.alive and c.cid not in self._issued:
                    self._issued.add(c.cid)
                    return c.cid, dict(c.config)
            return None

    def issuing_finished(self) -> bool:
        """No candidate will ever need a new trial: the search is done (a finalist whose trial
        fails may still be re-issued until then, see :meth:`on_failed`)."""
        with _LOCK:
            return self.pool.phase == DONE

    @property
    def done(self) -> bool:
        with _LOCK:
            return self.pool.phase == DONE

    # ------------------------------------------------------- dense reference
    @property
    def needs_reference(self) -> bool:
        """True while the rounds wait for the dense reference's LS history (a fit without one)."""
        return self.reference.needed

    def on_reference_progress(self, epoch: int | None, epochs: int | None) -> None:
        """The reference's trial reported ``epoch`` of ``epochs`` (:meth:`describe_reference`)."""
        with _LOCK:
            self.reference.on_progress(epoch, epochs)

    def describe_reference(self) -> str:
        """What the rounds wait for, in one line (empty when they do not wait)."""
        with _LOCK:
            return self.reference.describe()

    def set_reference(self, history) -> RoundDecision | None:
        """Keep the dense reference's LS history (E_ref, N) and close the round that waited for it."""
        with _LOCK:
            if not self.reference.set_history(history):
                return None
            return self._reference_known()

    def load_reference(self) -> RoundDecision | None:
        """Take the reference history from its cache (``meta["reference"]``: ``{"cache": location,
        "key": key}``, see :class:`lsh_tune.lyapunov.ReferenceCache`) once its trial has written it;
        ``None`` (and nothing changes) while it is not there."""
        with _LOCK:
            if not self.reference.load():
                return None
            return self._reference_known()

    def _reference_known(self) -> RoundDecision | None:
        decision = self._close_round_if_ready()
        self.save()
        return decision


def _signal_of(meta: dict, metric: str, ls_fit: PoolLSFit | None) -> RankingSignal:
    """The signal saved in ``meta``; a state saved before signals were: ``metric`` with ``ls_fit``'s settings."""
    if meta.get("signal"):
        return signal_from_dict(meta["signal"])
    fit = {} if ls_fit is None else ls_fit.meta()
    return make_signal(metric, {"ls_embedding": fit.get("embedding", "pca"), "ls_distance": fit.get("distance", "l2"),
                                "ls_fit": fit.get("fit", "pool"), "seed": int(fit.get("seed", 0))})


def _open_ledger(directory: str) -> SearchLedger:
    return SearchLedger.open(directory)


def _rebuild_in_memory(state: dict, ls_fit: PoolLSFit | None = None) -> SearchLedger:
    return SearchLedger.from_state_dict(state, None, ls_fit)
