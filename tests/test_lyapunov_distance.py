"""LS-space distances (paper Appendix B): embeddings x metrics, non-finite spectra."""
from __future__ import annotations

import numpy as np
import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import EMBEDDINGS, METRICS, REFERENCE, is_diverged, ls_distances, rank_candidates
from lsh_tune.lyapunov.distance import FLOOR_PERCENTILE

N = 24


def _reference(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = -np.linspace(0.2, 3.0, N)
    return [base - 0.5 / (e + 1) + 0.01 * rng.normal(size=N) for e in range(4)]


def _pool(ref: list[np.ndarray]) -> dict:
    last = ref[-1]
    tilt = np.linspace(1.0, -1.0, N)
    return {
        "same": [ref[0] + 0.3, last.copy()],
        "near": [last + 0.3 * tilt, last + 0.05 * tilt],
        "mid": [last + 0.6 * tilt, last + 0.4 * tilt],
        "far": [last + 1.5 * tilt, last + 1.5 * tilt],
        "diverged": [last, np.full(N, np.nan)],
    }


@pytest.mark.parametrize("embedding", EMBEDDINGS)
@pytest.mark.parametrize("metric", METRICS)
def test_every_combination_ranks_and_puts_diverged_last(embedding, metric):
    ref = _reference()
    dist, coords = ls_distances(ref, _pool(ref), embedding=embedding, metric=metric)
    assert dist["same"] == pytest.approx(0.0, abs=1e-12)
    assert dist["diverged"] == float("inf")
    ranking = rank_candidates(dist)
    assert ranking[0] == "same" and ranking[-1] == "diverged"
    assert set(ranking) == set(_pool(ref))
    assert coords[REFERENCE].shape == (len(ref), 2)
    assert coords["near"].shape == (2, 2) and np.isnan(coords["diverged"][-1]).all()


@pytest.mark.parametrize("embedding", ["pca", "raw"])
def test_l2_ranking_follows_the_offset(embedding):
    ref = _reference()
    dist, _ = ls_distances(ref, _pool(ref), embedding=embedding)
    assert rank_candidates(dist) == ["same", "near", "mid", "far", "diverged"]


def test_identical_spectra_give_zero_distance():
    ref = _reference()
    for embedding in EMBEDDINGS:
        for metric in METRICS:
            dist, _ = ls_distances(ref, {"a": ref[-1]}, embedding=embedding, metric=metric)
            assert dist["a"] == pytest.approx(0.0, abs=1e-12), (embedding, metric)


def test_minus_inf_is_filled_not_diverged():
    ref = _reference()
    pruned = ref[-1].copy()
    pruned[-3:] = -np.inf
    assert not is_diverged(pruned)
    # default rule: every exponent of the fit (reference history + candidate) below the 5th percentile of
    # their finite exponents, −inf included, is set to it (lsh_tune.lyapunov.distance docstring)
    dist, _ = ls_distances(ref, {"p": [pruned]}, embedding="raw")
    rows = np.vstack(ref + [pruned])
    floor = np.percentile(rows[np.isfinite(rows)], FLOOR_PERCENTILE)
    clip = lambda v: np.maximum(np.where(np.isneginf(v), floor, v), floor)  # noqa: E731
    # rel 1e-12: the same float64 operations in another order
    assert dist["p"] == pytest.approx(np.linalg.norm(clip(pruned) - clip(ref[-1])), rel=1e-12)
    zero, _ = ls_distances(ref, {"p": [pruned]}, embedding="raw", neg_inf_fill=0.0)  # the authors' rule
    filled = np.where(np.isneginf(pruned), 0.0, pruned)
    assert zero["p"] == pytest.approx(np.linalg.norm(filled - ref[-1]), rel=1e-12)
    dist2, _ = ls_distances(ref, {"p": [pruned]}, embedding="raw", neg_inf_fill=-10.0)
    assert len({dist2["p"], dist["p"], zero["p"]}) == 3 and np.isfinite(dist2["p"])
    with pytest.raises(LSHUsageError, match="neg_inf_fill='ceiling' is not allowed; use 'floor' or a finite number"):
        ls_distances(ref, {"p": [pruned]}, neg_inf_fill="ceiling")


@pytest.mark.parametrize("bad", [np.full(N, np.nan), np.full(N, -np.inf), np.r_[np.inf, np.zeros(N - 1)]])
def test_non_finite_candidates_never_crash(bad):
    ref = _reference()
    assert is_diverged(bad)
    dist, _ = ls_distances(ref, {"x": [bad], "ok": [ref[-1] + 0.1]})
    assert dist["x"] == float("inf") and np.isfinite(dist["ok"])


def test_single_spectra_and_arrays_are_accepted():
    ref = _reference()
    dist, coords = ls_distances(np.stack(ref), {"a": np.stack(ref[:2]), "b": ref[-1] + 0.2})
    assert set(dist) == {"a", "b"} and coords["b"].shape == (1, 2)


def test_usage_errors():
    ref = _reference()
    with pytest.raises(LSHUsageError, match="embedding"):
        ls_distances(ref, {"a": ref[-1]}, embedding="umap")
    with pytest.raises(LSHUsageError, match="metric"):
        ls_distances(ref, {"a": ref[-1]}, metric="l1")
    with pytest.raises(LSHUsageError, match="different lengths"):
        ls_distances(ref, {"a": ref[-1][:-1]})
    with pytest.raises(LSHUsageError, match="reference"):
        ls_distances(ref[:-1] + [np.full(N, np.nan)], {"a": ref[-1]})
    with pytest.raises(LSHUsageError, match="non-empty"):
        ls_distances(ref, {"a": []})


def test_rank_ties_are_deterministic():
    assert rank_candidates({"b": 1.0, "a": 1.0, "c": float("inf"), "d": 0.5}) == ["d", "a", "b", "c"]
