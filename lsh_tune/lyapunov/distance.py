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

* −inf (an exactly singular Jacobian direction: dead units, rows of pruned weights) and the far
  tail beside it follow :data:`NEG_INF_FLOOR` by default (:func:`fill_neg_inf`): every exponent of
  the fitted spectra below the :data:`FLOOR_PERCENTILE`-th percentile of their finite exponents is
  set to that percentile, −inf included. Why: a dead-unit run holds up to half its exponents at −inf
  and a finite tail down to −37 nats/step; replacing −inf by 0 (the authors' rule, still available
  as ``neg_inf_fill=0.0``) moves those exponents from the bottom of the spectrum to its top, and a
  few such runs take the pool's first PCA axis for themselves. Measured on ``tables/bench`` (2 of 48
  configurations have −inf, seeds 0 and 1; ``h`` spectra, PCA fitted on the reference and all 48
  runs' epochs 0..e, ``tests/test_ranking_signals.py``): with −inf → 0 the other runs' distances
  correlate with their distances in a fit without the dead runs at Spearman ρ 0.24–0.85 (e = 1..3),
  with the floor at ρ ≥ 0.99, and the distances' ρ with final test perplexity rises from
  −0.31 / −0.38 / +0.43 to +0.69 / +0.76 / +0.80 (mean of both seeds, e = 1 / 2 / 3). The 5th percentile
  sits in a plateau: the 2nd to the 10th give the same ρ within 0.03 after epoch 1.
* a spectrum with any NaN or +inf entry, or with no finite entry, is *diverged*: it is left
  out of the fit, its coordinates are NaN and, if it is a candidate's last spectrum, its
  distance is +inf, so it ranks last. Nothing raises for diverged candidates.
"""
from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np

from lsh_tune.errors import LSHUsageError, check_choice

__all__ = ["EMBEDDINGS", "FLOOR_PERCENTILE", "METRICS", "NEG_INF_FLOOR", "REFERENCE", "embed_histories",
           "embed_spectra", "fill_neg_inf", "is_diverged", "ls_distances", "point_distance", "rank_candidates"]

EMBEDDINGS = ("pca", "raw", "tsne")
METRICS = ("l2", "cosine")
REFERENCE = "__reference__"  # key of the reference's coordinates in the coords dict
#: The default −inf rule of :func:`fill_neg_inf` (the alternative is a number that replaces −inf only).
NEG_INF_FLOOR = "floor"
#: The percentile of the fitted spectra's finite exponents below which every exponent is clipped.
FLOOR_PERCENTILE = 5.0


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


def fill_neg_inf(rows: np.ndarray, neg_inf_fill: float | str = NEG_INF_FLOOR) -> np.ndarray:
    """Finite copies of spectra without NaN/+inf (M, N), nats per step: the −inf rule (module docstring).

    Args:
        rows: (M, N) spectra whose entries are finite or −inf, at least one finite.
        neg_inf_fill: :data:`NEG_INF_FLOOR` (every exponent below the :data:`FLOOR_PERCENTILE`-th
            percentile of the finite entries of ``rows``, −inf included, becomes that percentile) or a
            number that replaces −inf entries only (0.0: the authors').

    Raises:
        LSHUsageError: ``neg_inf_fill`` is neither a finite number nor :data:`NEG_INF_FLOOR`.

    >>> fill_neg_inf(np.array([[0.0, -1.0, -np.inf]]), 0.0).tolist()
    [[0.0, -1.0, 0.0]]
    >>> fill_neg_inf(np.array([[0.0, -1.0, -2.0, -np.inf]])).round(2).tolist()
    [[0.0, -1.0, -1.9, -1.9]]
    """
    rows = np.asarray(rows, dtype=np.float64)
    if neg_inf_fill == NEG_INF_FLOOR:
        finite = rows[np.isfinite(rows)]
        if finite.size == 0:
            return rows.copy()
        floor = float(np.percentile(finite, FLOOR_PERCENTILE))
        return np.maximum(np.where(np.isneginf(rows), floor, rows), floor)
    if isinstance(neg_inf_fill, (bool, str)) or not isinstance(neg_inf_fill, (int, float)) \
            or not np.isfinite(neg_inf_fill):
        raise LSHUsageError(f"neg_inf_fill={neg_inf_fill!r} is not allowed; use {NEG_INF_FLOOR!r} or a finite number")
    return np.where(np.isneginf(rows), float(neg_inf_fill), rows)


def point_distance(p: np.ndarray, q: np.ndarray, metric: str) -> float:
    """``l2`` or ``cosine`` (1 − p·q / (|p| |q|), 0 for two zero vectors, 1 for one) distance of two
    points of an LS space; +inf when either holds a non-finite coordinate.

    Raises:
        LSHUsageError: an unknown ``metric`` (the allowed ones: :data:`METRICS`).
    """
    check_choice("metric", metric, METRICS)
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        return float("inf")
    if metric == "l2":
        return float(np.linalg.norm(p - q))
    npn, nqn = np.linalg.norm(p), np.linalg.norm(q)
    if npn == 0.0 or nqn == 0.0:
        return 0.0 if npn == nqn else 1.0
    return float(max(0.0, 1.0 - float(p @ q) / (npn * nqn)))


def embed_histories(reference_history: Sequence[np.ndarray] | np.ndarray,
                    candidate_histories: Mapping[Hashable, Sequence[np.ndarray] | np.ndarray], *,
                    embedding: str = "pca", neg_inf_fill: float | str = NEG_INF_FLOOR,
                    seed: int = 0) -> tuple[dict, dict]:
    """The LS space of one fit: ``[v̂…, v_0^i, …, v_{-1}^i] = embedding([Λ̂, Λ^i …])`` (paper Appendix B).

    Args:
        reference_history: Λ̂, the dense reference's spectra (E_ref, N) or one (N,) spectrum.
        candidate_histories: candidate id -> Λ^i, its spectra (E_i, N) or one (N,) array.
        embedding: ``pca`` (paper), ``raw`` or ``tsne``.
        neg_inf_fill: the −inf rule (:func:`fill_neg_inf`), applied to all fitted spectra together.
        seed: random state of t-SNE.

    Returns:
        ``(points, coords)``: each id and :data:`REFERENCE` -> (E, d) points of the embedding (d = 2,
        or N for ``raw``: the filled spectra) and -> (E, 2) points for plots (PCA coordinates for
        ``raw``); NaN rows for diverged spectra (left out of the fit).

    Raises:
        LSHUsageError: bad embedding or ``neg_inf_fill``, spectra of different lengths, an empty
            history, a candidate named :data:`REFERENCE`, or a diverged last reference spectrum.
    """
    check_choice("embedding", embedding, EMBEDDINGS)
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
    fit = fill_neg_inf(rows[ok], neg_inf_fill)
    emb = embed_spectra(fit, embedding, seed=seed)
    plot = emb if emb.shape[1] == 2 else _pca_2d(fit)
    points = np.full((rows.shape[0], emb.shape[1]), np.nan)
    points[ok] = emb
    coords2 = np.full((rows.shape[0], 2), np.nan)
    coords2[ok] = plot
    out_points, out_coords, pos = {}, {}, 0
    for cid, h in blocks:
        end = pos + h.shape[0]
        out_points[cid], out_coords[cid] = points[pos:end], coords2[pos:end]
        pos = end
    return out_points, out_coords


def ls_distances(reference_history: Sequence[np.ndarray] | np.ndarray,
                 candidate_histories: Mapping[Hashable, Sequence[np.ndarray] | np.ndarray], *,
                 embedding: str = "pca", metric: str = "l2", neg_inf_fill: float | str = NEG_INF_FLOOR,
                 seed: int = 0) -> tuple[dict, dict]:
    """Distance of each candidate's current LS to the reference's in the embedded LS space.

    Args:
        reference_history: Λ̂, the dense reference's spectra (E_ref, N) or a single (N,) spectrum;
            the last one is the reference point v̂.
        candidate_histories: candidate id -> Λ^i, its spectra so far (E_i, N) or one (N,) array;
            the last one is the candidate's point v_{-1}^i.
        embedding: ``pca`` (paper), ``raw`` or ``tsne``.
        metric: ``l2`` (paper) or ``cosine``.
        neg_inf_fill: the −inf rule (:func:`fill_neg_inf`): :data:`NEG_INF_FLOOR` (default) or the
            number that replaces −inf (the authors': 0.0).
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
    check_choice("metric", metric, METRICS)
    points, coords = embed_histories(reference_history, candidate_histories, embedding=embedding,
                                     neg_inf_fill=neg_inf_fill, seed=seed)
    ref_point = points[REFERENCE][-1]
    distances = {cid: point_distance(ref_point, pts[-1], metric) for cid, pts in points.items() if cid != REFERENCE}
    return distances, coords


def rank_candidates(distances: Mapping[Hashable, float]) -> list:
    """Candidate ids from closest to farthest; +inf/NaN distances last, ties broken by ``str(id)``."""
    def key(cid):
        d = distances[cid]
        return (not np.isfinite(d), d if np.isfinite(d) else 0.0, str(cid))

    return sorted(distances, key=key)
