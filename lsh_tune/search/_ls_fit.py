"""The LS space (:class:`LSSpace`) and round ranking in one LS space fitted on the whole pool.

Paper §3, Appendix B.

When a round closes, the embedding (PCA by default) is fitted on the dense reference's LS history
together with the LS history of every candidate being ranked (one spectrum per round boundary of
its own training so far); a candidate's value is the distance from the reference's last point to
its own last point (:func:`lsh_tune.lyapunov.ls_distances`). A trial on its own can only fit the
reference and its own history: that is the ``ls_distance_own_fit`` it reports for monitoring. This class
keeps every candidate's spectra so the ledger can refit when the pool is complete. Ray-free.

The reference history may arrive after the candidates' first spectra (the dense reference is a
trial of the same search, see :mod:`lsh_tune.search.run.reference`): until :meth:`PoolLSFit.set_reference`
the fit has no reference and the ledger keeps the round open. With ``fit="candidate"`` each
candidate is ranked in a space fitted on the reference and its own history alone (what each trial
reports as ``ls_distance_own_fit``), computed here from the same spectra.

Files (experiment storage, written all-or-nothing before the ledger's state, so a resumed search
ranks with the same spectra): ``lsh/reference_ls.json`` (the reference history, once known) and
``lsh/spectra/<cid>.json`` (``{"<epoch>": spectrum}``). −inf exponents are stored as JSON
``-Infinity``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from lsh_tune.errors import LSHUsageError, check_choice, check_int
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS, ls_distances
from lsh_tune.search.layout import REFERENCE_LS_FILE, SPECTRA_DIR
from lsh_tune.storage import Storage

__all__ = ["LSSpace", "PoolLSFit", "LS_FITS"]

#: ``pool``: one embedding per round over the reference and every ranked candidate (the paper);
#: ``candidate``: rank by the distance each trial reports (reference + its own history).
LS_FITS = ("pool", "candidate")


@dataclass(frozen=True)
class LSSpace:
    """Where spectra are compared: the embedding, the distance in it and t-SNE's random state.

    One search has one LS space: the trials' own ``ls_distance_own_fit`` and the pool-wide ranking use
    the same one, with ``seed`` = the search seed (only ``tsne`` uses it).

    Args:
        embedding: ``pca`` (paper), ``raw`` or ``tsne``.
        distance: ``l2`` (paper) or ``cosine``.
        seed: t-SNE random state.
    """

    embedding: str = "pca"
    distance: str = "l2"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("ls_embedding", self.embedding, EMBEDDINGS)
        check_choice("ls_distance", self.distance, METRICS)
        check_int("seed", self.seed, 0)

    def distances(self, reference_history: Sequence | np.ndarray,
                  histories: Mapping[str, Sequence | np.ndarray]) -> dict[str, float]:
        """Distance of each history's last spectrum to the reference's last one, one fit over all.

        Args:
            reference_history: (E_ref, N) spectra of the dense reference.
            histories: candidate id -> its (E_i, N) spectra.
        """
        dist, _ = ls_distances(reference_history, histories, embedding=self.embedding, metric=self.distance,
                               seed=self.seed)
        return {cid: float(d) for cid, d in dist.items()}

    def to_dict(self) -> dict:
        return asdict(self)


class PoolLSFit:
    """Candidates' spectra and the LS distance a round is ranked by.

    Args:
        reference_history: the dense reference's spectra (E_ref, N), the last one is v̂; ``None``
            while the reference is still being trained (:meth:`set_reference` later).
        space: the LS space.
        directory: experiment storage for the files (a :class:`~lsh_tune.storage.Storage`, a
            directory or a URI; ``None``: in memory only).
        fit: ``pool`` (one embedding over the reference and every ranked candidate, the paper)
            or ``candidate`` (one per candidate, over the reference and its own history).
    """

    def __init__(self, reference_history: Sequence | np.ndarray | None, space: LSSpace = LSSpace(),
                 directory: Storage | str | os.PathLike | None = None, fit: str = "pool") -> None:
        check_choice("ls_fit", fit, LS_FITS)
        self.reference: np.ndarray | None = None
        self.space = space
        self.fit = fit
        self.storage = None if directory is None else Storage.of(directory)
        self.spectra: dict[str, dict[int, list[float]]] = {}
        if reference_history is not None:
            self.set_reference(reference_history, save=False)

    # -------------------------------------------------------------- reference
    @property
    def has_reference(self) -> bool:
        return self.reference is not None

    def set_reference(self, reference_history: Sequence | np.ndarray, *, save: bool = True) -> None:
        """Keep the reference's spectra (E_ref, N) (saved to the storage unless ``save=False``).

        Raises:
            LSHUsageError: not a non-empty (epochs, N) array, or N differs from spectra already added.
        """
        reference = np.asarray(reference_history, dtype=np.float64)
        if reference.ndim != 2 or reference.size == 0:
            raise LSHUsageError(f"reference LS history must be (epochs, N); got shape {reference.shape}")
        for cid, known in self.spectra.items():
            for values in known.values():
                _check_length(cid, values, reference.shape[1])
        self.reference = reference
        if save:
            self.save_reference()

    # -------------------------------------------------------------- persistence
    def meta(self) -> dict:
        """What the ledger's state saves: the LS space (``embedding``, ``distance``, ``seed``) and ``fit``."""
        return {**self.space.to_dict(), "fit": self.fit}

    def persist_in(self, directory: Storage | str | os.PathLike) -> None:
        """Keep the files in ``directory`` from now on (a new search's experiment), and write the reference's."""
        self.storage = Storage.of(directory)
        self.save_reference()

    def save_reference(self) -> None:
        if self.storage is not None and self.reference is not None:
            self.storage.write_json(REFERENCE_LS_FILE, self.reference.tolist(), indent=None)

    @classmethod
    def load(cls, directory: Storage | str | os.PathLike, meta: Mapping) -> "PoolLSFit":
        """The fit of a saved search: the reference (if known yet) and every candidate's spectra."""
        store = Storage.of(directory)
        try:
            reference = store.read_json(REFERENCE_LS_FILE) if store.is_file(REFERENCE_LS_FILE) else None
        except ValueError as e:
            raise LSHUsageError(f"cannot read {store.uri_of(REFERENCE_LS_FILE)}: {e}") from None
        fit = cls(reference, LSSpace(meta["embedding"], meta["distance"], int(meta["seed"])), store,
                  fit=meta.get("fit", "pool"))
        for name in store.listdir(SPECTRA_DIR):
            if name.endswith(".json"):
                rel = f"{SPECTRA_DIR}/{name}"
                try:
                    fit.spectra[name[:-len(".json")]] = {int(e): s for e, s in store.read_json(rel).items()}
                except (ValueError, AttributeError) as e:
                    raise LSHUsageError(f"cannot read the saved spectra {store.uri_of(rel)} (corrupt or truncated: "
                                        f"{e}); the search cannot rank with them") from None
        return fit

    # ---------------------------------------------------------------- updates
    def add(self, cid: str, epoch: int, spectrum: Sequence[float]) -> bool:
        """Keep ``cid``'s spectrum at its boundary ``epoch`` (a replay of a known epoch is ignored).

        Raises:
            LSHUsageError: the spectrum's length differs from the reference's.
        """
        known = self.spectra.setdefault(cid, {})
        if int(epoch) in known:
            return False
        values = [float(v) for v in spectrum]
        if self.reference is not None:
            _check_length(cid, values, self.reference.shape[1])
        known[int(epoch)] = values
        if self.storage is not None:
            self.storage.write_json(f"{SPECTRA_DIR}/{cid}.json", {str(e): s for e, s in sorted(known.items())},
                                    indent=None)
        return True

    def distances(self, epochs: Mapping[str, Sequence[int]]) -> dict[str, float]:
        """Distance of each candidate's last spectrum to the reference, one fit over all of them.

        Args:
            epochs: candidate id -> its boundary epochs so far (last = now). The history fitted is
                every spectrum added for the candidate up to its last boundary: one per epoch,
                epoch 0 included, when the trials send them (``ls_epochs``), else the boundaries.

        Raises:
            LSHUsageError: a spectrum for one of those epochs was never added, or there is no
                reference yet.
        """
        if self.reference is None:
            raise LSHUsageError("the dense reference's LS history is not known yet: no round can be ranked")
        histories = {}
        for cid, eps in epochs.items():
            have = self.spectra.get(cid, {})
            missing = [e for e in eps if int(e) not in have]
            if missing:
                raise LSHUsageError(f"no LS of candidate {cid!r} at epoch(s) {missing}: its results lack the "
                                    "spectrum ('ls')")
            last = max(int(e) for e in eps)
            histories[cid] = np.asarray([have[e] for e in sorted(have) if e <= last], dtype=np.float64)
        if self.fit == "candidate":
            return {cid: self.space.distances(self.reference, {cid: h})[cid] for cid, h in histories.items()}
        return self.space.distances(self.reference, histories)


def _check_length(cid: str, values: Sequence[float], n: int) -> None:
    if len(values) != n:
        raise LSHUsageError(f"LS of candidate {cid!r} has {len(values)} exponents; the reference has {n}")
