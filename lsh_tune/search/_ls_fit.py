"""The LS space (:class:`LSSpace`) and round ranking in one LS space fitted on the whole pool.

Paper §3, Appendix B.

When a round closes, the embedding (PCA by default) is fitted on the dense reference's LS history
together with the LS history of every candidate being ranked (one spectrum per round boundary of
its own training so far); a candidate's value is the distance from the reference's last point to
its own last point (:func:`lsh_tune.lyapunov.ls_distances`). A trial on its own can only fit the
reference and its own history: that is the ``ls_distance`` it reports for monitoring. This class
keeps every candidate's spectra so the ledger can refit when the pool is complete. Ray-free.

Files (experiment directory, written atomically before the ledger's state, so a resumed search
ranks with the same spectra): ``lsh/reference_ls.json`` (the reference history) and
``lsh/spectra/<cid>.json`` (``{"<epoch>": spectrum}``). −inf exponents are stored as JSON
``-Infinity``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lsh_tune.errors import LSHUsageError, check_choice, check_int
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS, ls_distances
from lsh_tune.storage import atomic_write_text

__all__ = ["LSSpace", "PoolLSFit", "LS_FITS"]

#: ``pool``: one embedding per round over the reference and every ranked candidate (the paper);
#: ``candidate``: rank by the distance each trial reports (reference + its own history).
LS_FITS = ("pool", "candidate")
_REFERENCE_FILE = "lsh/reference_ls.json"
_SPECTRA_DIR = "lsh/spectra"


@dataclass(frozen=True)
class LSSpace:
    """Where spectra are compared: the embedding, the distance in it and t-SNE's random state.

    One search has one LS space: the trials' own ``ls_distance`` and the pool-wide ranking use
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
    """Candidates' spectra and the pool-wide LS distance.

    Args:
        reference_history: the dense reference's spectra (E_ref, N); the last one is v̂.
        space: the LS space.
        directory: experiment directory for the files (``None``: in memory only).
    """

    def __init__(self, reference_history: Sequence | np.ndarray, space: LSSpace = LSSpace(),
                 directory: str | os.PathLike | None = None) -> None:
        self.reference = np.asarray(reference_history, dtype=np.float64)
        if self.reference.ndim != 2 or self.reference.size == 0:
            raise LSHUsageError(f"reference LS history must be (epochs, N); got shape {self.reference.shape}")
        self.space = space
        self.directory = None if directory is None else Path(directory)
        self.spectra: dict[str, dict[int, list[float]]] = {}

    # -------------------------------------------------------------- persistence
    def meta(self) -> dict:
        """The LS space as saved in the ledger's state (``embedding``, ``distance``, ``seed``)."""
        return self.space.to_dict()

    def save_reference(self) -> None:
        if self.directory is not None:
            atomic_write_text(self.directory / _REFERENCE_FILE, json.dumps(self.reference.tolist()))

    @classmethod
    def load(cls, directory: str | os.PathLike, meta: Mapping) -> "PoolLSFit":
        """The fit of a saved search: reference and every candidate's spectra from ``directory``."""
        directory = Path(directory)
        try:
            reference = json.loads((directory / _REFERENCE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LSHUsageError(f"cannot read {directory / _REFERENCE_FILE}: {e}") from None
        fit = cls(reference, LSSpace(meta["embedding"], meta["distance"], int(meta["seed"])), directory)
        for f in sorted((directory / _SPECTRA_DIR).glob("*.json")):
            fit.spectra[f.stem] = {int(e): s for e, s in json.loads(f.read_text(encoding="utf-8")).items()}
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
        if len(values) != self.reference.shape[1]:
            raise LSHUsageError(f"LS of candidate {cid!r} has {len(values)} exponents; the reference has "
                                f"{self.reference.shape[1]}")
        known[int(epoch)] = values
        if self.directory is not None:
            atomic_write_text(self.directory / _SPECTRA_DIR / f"{cid}.json",
                              json.dumps({str(e): s for e, s in sorted(known.items())}))
        return True

    def distances(self, epochs: Mapping[str, Sequence[int]]) -> dict[str, float]:
        """Distance of each candidate's last spectrum to the reference, one fit over all of them.

        Args:
            epochs: candidate id -> its boundary epochs so far (the history to fit, last = now).

        Raises:
            LSHUsageError: a spectrum for one of those epochs was never added.
        """
        histories = {}
        for cid, eps in epochs.items():
            have = self.spectra.get(cid, {})
            missing = [e for e in eps if int(e) not in have]
            if missing:
                raise LSHUsageError(f"no LS of candidate {cid!r} at epoch(s) {missing}: its results lack the "
                                    "spectrum ('ls')")
            histories[cid] = np.asarray([have[int(e)] for e in eps], dtype=np.float64)
        return self.space.distances(self.reference, histories)
