"""Distances in LS space between a dense reference and pruned candidates (paper §3, Appendix B).

    [v̂, v_0^i, ..., v_{-1}^i] = embedding([Λ̂, Λ^i]),   s_i = distance(v̂, v_{-1}^i)

The embedding is fitted once on the reference's LS history (one spectrum per epoch of its
training, the final one last) together with every candidate's LS history, as in the paper; the
reference point v̂ is the reference history's **last** spectrum and a candidate's point its
**last** (current-epoch) spectrum. Embeddings: ``pca`` (2-D, the paper's choice), ``raw`` (the
spectrum itself), ``tsne`` (2-D); metrics ``l2`` and ``cosine`` (1 − p·q / (|p| |q|)).
The authors' final public code instead compares raw spectra at the same epoch with L2: pass
``[reference_history[j]]`` as the reference and ``embedding="raw"``.

Non-finite exponents (style rule 10):

* −inf (an exactly singular Jacobian direction, e.g. rows of pruned weights) is replaced by
  ``neg_inf_fill`` before embedding — 0.0 by default, as the authors did before PCA.
* a spectrum with any NaN or +inf entry, or with no finite entry, is *diverged*: it is left
  out of the fit, its coordinates are NaN and, if it is a candidate's last spectrum, its
  distance is +inf, so it ranks last. Nothing raises for diverged candidates.
"""
from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np

from lsh_tune.errors import LSHUsageError, check_choice

__all__ = ["EMBEDDINGS", "METRICS", "REFERENCE", "embed_spectra", "is_diverged", "ls_distances",
           "rank_candidates"]

EMBEDDINGS = ("pca", "raw", "tsne")
METRICS = ("l2", "cosine")
REFERENCE = "__reference__"  # key of the reference's coordinates in the coords dict


def is_diverged(ls: np.ndarray) -> bool:
    """True if ``ls`` holds a NaN or +inf, or no finite exponent at all."""
    ls = np.asarray(ls, dtype=np.float64)
    return bool(np.isnan(ls).any() or np.isposinf(ls).any() or not np.isfinite(ls).any())


def _as_history(name: object, history) -> np.ndarray:
    arr = np.asarray(history, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.size == 0:
        raise LSHUsageError(f"LS history of {name!r} must be a non-empty list of 1-D spectra; got shape {arr.shape}")
    return arr


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """2-D PCA scores of the rows of ``x`` (zero columns where fewer components exist)."""
    out = np.zeros((x.shape[0], 2))
    if x.shape[0] < 2:
        return out
    from sklearn.decomposition import PCA

    n_comp = min(2, x.shape[0], x.shape[1])
    scores = PCA(n_components=n_comp, svd_solver="full").fit_transform(x)
    out[:, :n_comp] = scores
    return out


def _tsne_2d(x: np.ndarray, seed: int) -> np.ndarray:
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (x.shape[0] - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", method="exact",
                random_state=seed).fit_transform(x)


def embed_spectra(spectra: np.ndarray, embedding: str = "pca", *, seed: int = 0) -> np.ndarray:
    """Embed finite spectra (M, N): ``pca``/``tsne`` -> (M, 2), ``raw`` -> (M, N) unchanged."""
    check_choice("embedding", embedding, EMBEDDINGS)
    if embedding == "raw":
        return spectra.copy()
    if embedding == "pca":
        return _pca_2d(spectra)
    return _tsne_2d(spectra, seed)


def _distance(p: np.ndarray, q: np.ndarray, metric: str) -> float:
    if metric == "l2":
        return float(np.linalg.norm(p - q))
    npn, nqn = np.linalg.norm(p), np.linalg.norm(q)
    if npn == 0.0 or nqn == 0.0:
        return 0.0 if npn == nqn else 1.0
    return float(max(0.0, 1.0 - float(p @ q) / (npn * nqn)))


def ls_distances(reference_history: Sequence[np.ndarray] | np.ndarray,
                 candidate_histories: Mapping[Hashable, Sequence[np.ndarray] | np.ndarray], *,
                 embedding: str = "pca", metric: str = "l2", neg_inf_fill: float = 0.0,
                 seed: int = 0) -> tuple[dict, dict]:
    """Distance of each candidate's current LS to the reference's in the embedded LS space.

    Args:
        reference_history: Λ̂, the dense reference's spectra (E_ref, N) or a single (N,) spectrum;
            the last one is the reference point v̂.
        candidate_histories: candidate id -> Λ^i, its spectra so far (E_i, N) or one (N,) array;
            the last one is the candidate's point v_{-1}^i.
        embedding: ``pca`` (paper), ``raw`` or ``tsne``.
        metric: ``l2`` (paper) or ``cosine``.
        neg_inf_fill: value that replaces −inf exponents before embedding (authors: 0).
        seed: random state of t-SNE.

    Returns:
        ``(distances, coords)``: distances maps each candidate id to a float ≥ 0 (+inf if its
        last spectrum diverged); coords maps each id and :data:`REFERENCE` to an (E, 2) array of
        2-D points for plots (PCA coordinates when ``embedding='raw'``; NaN rows for diverged
        spectra).

    Raises:
        LSHUsageError: bad embedding/metric, spectra of different lengths, an empty history,
            or a diverged reference.

    >>> ref = [np.array([0.0, -1.0, -2.0]), np.array([0.1, -1.0, -2.5])]
    >>> d, _ = ls_distances(ref, {"a": [ref[-1]], "b": [np.array([np.nan] * 3)]}, embedding="raw")
    >>> d["a"], d["b"]
    (0.0, inf)
    """
    check_choice("embedding", embedding, EMBEDDINGS)
    check_choice("metric", metric, METRICS)
    if REFERENCE in candidate_histories:
        raise LSHUsageError(f"candidate id {REFERENCE!r} is reserved for the reference")
    ref = _as_history("reference", reference_history)
    cands = {cid: _as_history(cid, h) for cid, h in candidate_histories.items()}
    widths = {ref.shape[1]} | {h.shape[1] for h in cands.values()}
    if len(widths) > 1:
        raise LSHUsageError(f"LS of different lengths cannot be compared: {sorted(widths)}")
    if is_diverged(ref[-1]):
        raise LSHUsageError("the reference's last LS is not finite (NaN/+inf); recompute the reference")
    blocks = [(REFERENCE, ref)] + list(cands.items())
    rows = np.concatenate([h for _, h in blocks])
    ok = np.array([not is_diverged(r) for r in rows])
    fit = np.where(np.isneginf(rows[ok]), neg_inf_fill, rows[ok])
    emb = embed_spectra(fit, embedding, seed=seed)
    plot = emb if emb.shape[1] == 2 else _pca_2d(fit)
    points = np.full((rows.shape[0], emb.shape[1]), np.nan)
    points[ok] = emb
    coords2 = np.full((rows.shape[0], 2), np.nan)
    coords2[ok] = plot
    distances, coords, pos = {}, {}, 0
    ref_point = points[ref.shape[0] - 1]
    for idx, (cid, h) in enumerate(blocks):
        end = pos + h.shape[0]
        coords[cid] = coords2[pos:end]
        if idx > 0:
            last = end - 1
            distances[cid] = _distance(ref_point, points[last], metric) if ok[last] else float("inf")
        pos = end
    return distances, coords


def rank_candidates(distances: Mapping[Hashable, float]) -> list:
    """Candidate ids from closest to farthest; +inf/NaN distances last, ties broken by ``str(id)``."""
    def key(cid):
        d = distances[cid]
        return (not np.isfinite(d), d if np.isfinite(d) else 0.0, str(cid))

    return sorted(distances, key=key)
