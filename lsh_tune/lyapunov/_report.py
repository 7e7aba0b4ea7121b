"""A candidate's spectrum as the numbers a trial reports: the LS, its summary and its distance to the reference.

:func:`spectrum_metrics` is what a user's own Ray Tune trainable adds to a round-boundary report
for an LS-ranked search (``lsh_tune.search.candidate_metrics(..., ls=spectrum_metrics(...))``).
The key names are the search's result contract: ``ls`` (the spectrum; the scheduler's pool-wide
fit reads it) and ``ls_distance_own_fit`` (the distance in the space fitted on the reference and this
candidate's history alone; ranked with ``metric="ls"`` when no pool-wide fit is used), plus ``ls_max``, ``ls_mean``,
``ls_variance``, ``ls_min``, ``ls_n``, ``ls_neg_inf``, ``ls_nan`` (:func:`ls_summary`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lsh_tune.lyapunov.distance import ls_distances
from lsh_tune.lyapunov.spectrum import ls_summary

__all__ = ["spectrum_metrics"]


def spectrum_metrics(history: Sequence[Sequence[float]] | np.ndarray,
                     reference_history: Sequence[Sequence[float]] | np.ndarray, *,
                     embedding: str = "pca", distance: str = "l2", seed: int = 0) -> dict[str, Any]:
    """Report entries of a candidate's latest spectrum.

    Args:
        history: the candidate's spectra so far, one per round boundary, oldest first: (R, N)
            (nats per time step, e.g. from :func:`~lsh_tune.lyapunov.lyapunov_spectrum`); the
            last row is the current spectrum.
        reference_history: the dense reference's spectra (E_ref, N); its last row is v̂.
        embedding: LS-space embedding, ``pca`` (the paper's), ``raw`` or ``tsne``.
        distance: ``l2`` or ``cosine``.
        seed: t-SNE random state.

    Returns:
        ``{"ls": the last spectrum as a list of N floats (−inf and NaN kept), "ls_distance_own_fit": its
        distance to v̂ in the LS space fitted on the reference and this history (+inf when
        diverged), "ls_max", "ls_mean", "ls_variance", "ls_min", "ls_n", "ls_neg_inf", "ls_nan"}``.

    Raises:
        LSHUsageError: an empty history, spectra of different lengths, a bad embedding or
            distance, or a diverged reference.

    Example (−1.2 lies below the fit's 5th percentile of exponents, −1.15, and is clipped to it:
    :func:`~lsh_tune.lyapunov.distance.fill_neg_inf`):
        >>> ref = [[0.0, -1.0], [0.1, -1.2]]
        >>> m = spectrum_metrics([[0.1, -1.0]], ref, embedding="raw")
        >>> m["ls"], round(m["ls_distance_own_fit"], 3), m["ls_n"]
        ([0.1, -1.0], 0.15, 2)
    """
    distances, _ = ls_distances(reference_history, {"candidate": history}, embedding=embedding,
                                metric=distance, seed=seed)
    current = np.atleast_2d(np.asarray(history, dtype=np.float64))[-1]
    out: dict[str, Any] = {"ls": [float(v) for v in current], "ls_distance_own_fit": float(distances["candidate"])}
    out.update({f"ls_{k}": v for k, v in ls_summary(current).items()})
    return out
