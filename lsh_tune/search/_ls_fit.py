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
reports as ``ls_distance_own_fit``), computed here from the same spectra. With ``fit="authors"``
(the authors' code, ``FATE4869/hyperpruning`` ``sources/util.py`` ``LE_distance_main``) each candidate at
its epoch e is ranked in a space fitted on the reference's epochs 0..e and its own history, against the
reference **at the same epoch e** (the reference's last epoch where it trained fewer), −inf set to 0;
the other fits use the default −inf rule (:func:`lsh_tune.lyapunov.distance.fill_neg_inf`).

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
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS, NEG_INF_FLOOR, ls_distances
from lsh_tune.search.layout import REFERENCE_LS_FILE, SPECTRA_DIR
from lsh_tune.storage import Storage

__all__ = ["LSSpace", "PoolLSFit", "LS_FITS"]

#: ``pool``: one embedding per round over the reference and every ranked candidate;
#: ``candidate``: rank by the distance each trial reports (reference + its own history);
#: ``authors``: per candidate, the reference's epochs 0..e + its own, against the reference at epoch e, −inf → 0.
LS_FITS = ("pool", "candidate", "authors")
#: The −inf rule of each fit (:func:`~lsh_tune.lyapunov.distance.fill_neg_inf`).
NEG_INF_RULES = {"pool": NEG_INF_FLOOR, "candidate": NEG_INF_FLOOR, "authors": 0.0}


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
                  histories: Mapping[str, Sequence | np.ndarray], *,
                  neg_inf_fill: float | str = NEG_INF_FLOOR) -> dict[str, float]:
        """Distance of each history's last spectrum to the reference's last one, one fit over all.

        Args:
            reference_history: (E_ref, N) spectra of the dense reference (nats per step).
            histories: candidate id -> its (E_i, N) spectra.
            neg_inf_fill: the −inf rule (:func:`~lsh_tune.lyapunov.distance.fill_neg_inf`).
        """
        dist, _ = ls_distances(reference_history, histories, embedding=self.embedding, metric=self.distance,
                               neg_inf_fill=neg_inf_fill, seed=self.seed)
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
        fit: ``pool`` (one embedding over the reference and every ranked candidate),
            ``candidate`` (one per candidate, over the reference and its own history) or ``authors``
            (one per candidate, over the reference's epochs 0..e and its own, measured against the
            reference at e; see the module docstring).
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
        rule = NEG_INF_RULES[self.fit]
        if self.fit == "authors":
            return {cid: self.space.distances(self.reference_at(max(int(e) for e in epochs[cid])), {cid: h},
                                              neg_inf_fill=rule)[cid] for cid, h in histories.items()}
        if self.fit == "candidate":
            return {cid: self.space.distances(self.reference, {cid: h}, neg_inf_fill=rule)[cid]
                    for cid, h in histories.items()}
        return self.space.distances(self.reference, histories, neg_inf_fill=rule)

    def reference_at(self, epoch: int) -> np.ndarray:
        """The reference's spectra of epochs 0..``epoch`` ((epoch + 1, N); its whole history where it
        has fewer: a reference trained fewer epochs, or given as a checkpoint, ends with its last).

        Raises:
            LSHUsageError: there is no reference yet.
        """
        if self.reference is None:
            raise LSHUsageError("the dense reference's LS history is not known yet: no round can be ranked")
        return self.reference[:max(0, int(epoch)) + 1]


def _check_length(cid: str, values: Sequence[float], n: int) -> None:
    if len(values) != n:
        raise LSHUsageError(f"LS of candidate {cid!r} has {len(values)} exponents; the reference has {n}")
