"""The dense reference as the search sees it: one object that owns its lifecycle and its progress (Ray-free).

The rounds of an LS-ranked search compare every candidate with the dense reference's LS history,
so they wait for it. The reference is trained by a trial of the search itself (cid
:data:`~lsh_tune.search.keys.REFERENCE_CID`, :mod:`lsh_tune.search.run.reference`) and cached in the
storage path; the ledger keeps one :class:`DenseReference` and asks it, instead of special-casing
the reference's cid in each of its methods.

Its :attr:`~DenseReference.state`, from the ledger's point of view (one process, one session):

* ``not_needed`` — the rounds rank without it (metric ``loss``), or its history was given;
* ``waiting`` — needed, and no trial trains it in this process yet (a new search, a resume, a trial
  that failed and is to be issued again);
* ``issued`` — handed to Tune (:meth:`~DenseReference.issue`) or found among the restored trials
  (:meth:`~DenseReference.bind`), no epoch reported yet in this session;
* ``training`` — its trial reported epoch ``epoch`` of ``epochs`` (:meth:`~DenseReference.on_progress`);
* ``done`` — its LS history is known (:meth:`~DenseReference.load` from the cache, or
  :meth:`~DenseReference.set_history`): rounds may close.

Persisted with the ledger's state (``lsh/state.json`` ``meta``, the keys it had before this object
existed, so older states resume): ``reference`` = ``{"cache": location, "key": key}`` (where its
trial caches it) and ``reissued[REFERENCE_CID]`` (re-issues used). The history itself lives in the
pool-wide LS fit (:class:`~lsh_tune.search._ls_fit.PoolLSFit`, saved beside the state).
"""
from __future__ import annotations

from typing import Any

from lsh_tune.search._ls_fit import PoolLSFit
from lsh_tune.search.keys import REFERENCE_CID

__all__ = ["DenseReference", "REFERENCE_STATES", "ReferenceFailed"]

REFERENCE_STATES = ("not_needed", "waiting", "issued", "training", "done")


class ReferenceFailed(RuntimeError):
    """The reference's trial failed more often than re-issues allow: no round can ever be ranked."""


class DenseReference:
    """The dense reference's lifecycle and progress.

    Args:
        ls_fit: the pool-wide LS fit whose rounds need the reference's history (``None``: none needed).
        meta: the ledger's saved metadata, read and updated in place (``reference``, ``reissued``).
    """

    cid = REFERENCE_CID

    def __init__(self, ls_fit: PoolLSFit | None, meta: dict[str, Any]) -> None:
        self.ls_fit = ls_fit
        self.meta = meta
        self._issued = False                 # a trial trains it in this process
        self.epoch: int | None = None        # the epoch its trial last reported (this session)
        self.epochs: int | None = None       # the epochs it trains in all

    # ------------------------------------------------------------------ queries
    @property
    def needed(self) -> bool:
        """True while rounds wait for its history (a pool-wide fit without one)."""
        return self.ls_fit is not None and not self.ls_fit.has_reference

    @property
    def state(self) -> str:
        """One of :data:`REFERENCE_STATES` (see the module docstring)."""
        if self.ls_fit is None:
            return "not_needed"
        if self.ls_fit.has_reference:
            return "done"
        if not self._issued:
            return "waiting"
        return "issued" if self.epoch is None else "training"

    @property
    def source(self) -> dict | None:
        """``{"cache": location, "key": key}``: where its trial caches it, or ``None``."""
        return self.meta.get("reference")

    @property
    def reissued(self) -> int:
        """How often its trial was issued again after failing (over the whole search)."""
        return int(self.meta.get("reissued", {}).get(REFERENCE_CID, 0))

    def owns(self, cid: str) -> bool:
        """Whether ``cid`` names the reference's trial."""
        return cid == REFERENCE_CID

    def describe(self) -> str:
        """One line for Tune's status: what the rounds wait for (empty when they do not wait)."""
        if not self.needed:
            return ""
        return (f"dense reference training (epoch {self.epoch or 0}/{self.epochs or '?'}), "
                "rounds wait for it")

    # --------------------------------------------------------------- lifecycle
    def issue(self) -> bool:
        """Hand out its trial when it is needed and none trains it in this process; True if handed out."""
        if not self.needed or self._issued:
            return False
        self._issued = True
        return True

    def bind(self) -> None:
        """A Tune trial of the reference exists in this process (a restored one)."""
        self._issued = True

    def on_progress(self, epoch: int | None, epochs: int | None) -> None:
        """Its trial reported ``epoch`` of ``epochs`` (the reference trial's reports)."""
        self.epoch = None if epoch is None else int(epoch)
        self.epochs = None if epochs is None else int(epochs)

    def on_failed(self, retries: int) -> bool:
        """Its trial failed for good: issue it again (it resumes from its newest saved epoch) while
        fewer than ``retries`` re-issues were used; returns whether anything changed (to save).

        Raises:
            ReferenceFailed: no re-issue is left while it is still needed.
        """
        if not self.needed:
            return False
        if self.reissued >= retries:
            raise ReferenceFailed(f"the dense reference's trial failed {retries + 1} times (its error is in "
                                  "Tune's trial logs); the search cannot rank without it: fix the cause and resume")
        self.meta.setdefault("reissued", {})[REFERENCE_CID] = self.reissued + 1
        self._issued = False
        self.epoch = None
        return True

    def set_history(self, history) -> bool:
        """Keep its LS history (E_ref, N), nats per step; returns whether it was needed (rounds may close now)."""
        if not self.needed:
            return False
        self.ls_fit.set_reference(history)
        return True

    def load(self) -> bool:
        """Take its history from the cache (:attr:`source`, :class:`lsh_tune.lyapunov.ReferenceCache`)
        once its trial has written it; returns whether it was taken (False, nothing changed, while not there)."""
        from lsh_tune.lyapunov import ReferenceCache

        if not self.needed or not self.source:
            return False
        ref = ReferenceCache(self.source["cache"]).load(self.source["key"])
        return ref is not None and self.set_history(ref.spectra())
