"""Predictive power of a table's early signals for the final perplexity (Ray-free).

For every epoch ``e`` and every signal — the validation loss at ``e`` and each logged LS distance
``<state>/<embedding>/<metric>`` at ``e`` (:mod:`lsh_tune.table._distances`) — the Spearman rank
correlation over the table's runs (every configuration × seed) between the signal and the run's
final test perplexity, with a percentile bootstrap 95 % interval over configurations (a
configuration's seeds are resampled together). A signal that ranks candidates the way their final
perplexity does has ρ near +1 (lower distance or loss ↔ lower perplexity). Distances of only the
``k`` leading exponents (``--ls-top k`` of a search) are computed from the stored spectra.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lsh_tune.errors import LSHUsageError, check_int
from lsh_tune.seeds import derive_seed
from lsh_tune.table._distances import run_distances
from lsh_tune.table._format import REFERENCE_KEY
from lsh_tune.table._table import Table

__all__ = ["predictive_power", "signals"]


def signals(table: Table, tops: Sequence[int] = ()) -> list[str]:
    """``val_loss``, every logged distance name, then ``<state>/<embedding>/<metric>/top<k>`` for
    each ``k`` of ``tops`` (PCA and raw embeddings: t-SNE is too slow to refit here)."""
    st = table.settings
    extra = [f"{state}/{emb}/{metric}/top{k}" for k in tops for state in st.ls_states
             for emb in ("pca", "raw") for metric in st.metrics]
    return ["val_loss"] + st.distance_names() + extra


def _top_distances(table: Table, name: str) -> dict[tuple[str, int], list[float]]:
    """(key, seed) -> the per-epoch distances of signal ``<state>/<emb>/<metric>/top<k>``,
    computed from the stored spectra (the table logs only the full-spectrum distances)."""
    state, emb, metric, top = name.split("/")
    k = int(top[3:])
    n = len(table.run(REFERENCE_KEY, table.settings.seeds[0])["epochs"][0]["ls"][state])
    if not 1 <= k <= n:
        raise LSHUsageError(f"top {k}: the table's {state!r} spectra have N={n} exponents; use 1…{n}")
    refs = {s: table.run(REFERENCE_KEY, s) for s in table.settings.seeds}
    return {(key, s): run_distances(table.run(key, s), refs[s], state, emb, metric, top=k)
            for key in table.keys for s in table.settings.seeds}


def _values(table: Table, name: str) -> dict[tuple[str, int], list[float]]:
    """(key, seed) -> signal ``name`` at every epoch 0…E."""
    if "/top" in name:
        return _top_distances(table, name)
    out = {}
    for key in table.keys:
        for s in table.settings.seeds:
            recs = table.run(key, s)["epochs"]
            out[key, s] = [float(r["val_loss"]) if name == "val_loss" else
                           float(r.get("distance", {}).get(name, np.nan)) for r in recs]
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def predictive_power(table: Table, *, boot: int = 1000, seed: int = 0, tops: Sequence[int] = ()) -> list[dict]:
    """One row per (signal, epoch 1…epochs): ``{"signal", "epoch", "rho", "lo", "hi", "n"}``;
    ``tops``: also the distances of only the ``k`` leading exponents (:func:`signals`).

    Raises:
        LSHUsageError: ``boot`` < 1, or a ``k`` of ``tops`` outside 1…N.
    """
    check_int("boot", boot, 1)
    for k in tops:
        check_int("top", k, 1)
    keys, seeds = table.keys, table.settings.seeds
    final = np.array([[table.run(k, s)["final"]["test_ppl"] for s in seeds] for k in keys])
    rng = np.random.default_rng(derive_seed(seed, "bootstrap"))
    draws = rng.integers(0, len(keys), size=(boot, len(keys)))
    rows = []
    for name in signals(table, tops):
        values = _values(table, name)
        for epoch in range(1, table.settings.epochs + 1):
            x = np.array([[values[k, s][epoch] for s in seeds] for k in keys])
            rho = _spearman(x.ravel(), final.ravel())
            samples = np.array([_spearman(x[d].ravel(), final[d].ravel()) for d in draws])
            samples = samples[np.isfinite(samples)]
            lo, hi = (np.percentile(samples, [2.5, 97.5]) if samples.size else (np.nan, np.nan))
            rows.append({"signal": name, "epoch": epoch, "rho": rho, "lo": float(lo), "hi": float(hi),
                         "n": int(x.size)})
    return rows
