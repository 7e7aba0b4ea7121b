"""Predictive power of a table's early signals for the final perplexity (Ray-free).

For every epoch ``e`` and every signal — the validation loss at ``e`` and each logged LS distance
``<state>/<embedding>/<metric>`` at ``e`` (:mod:`lsh_tune.table._distances`) — the Spearman rank
correlation over the table's runs (every configuration × seed) between the signal and the run's
final test perplexity, with a percentile bootstrap 95 % interval over configurations (a
configuration's seeds are resampled together). A signal that ranks candidates the way their final
perplexity does has ρ near +1 (lower distance or loss ↔ lower perplexity).
"""
from __future__ import annotations

import numpy as np

from lsh_tune.errors import check_int
from lsh_tune.seeds import derive_seed
from lsh_tune.table._table import Table

__all__ = ["predictive_power", "signals"]


def signals(table: Table) -> list[str]:
    """``val_loss`` and every logged distance name."""
    return ["val_loss"] + table.settings.distance_names()


def _value(rec: dict, name: str) -> float:
    return float(rec["val_loss"]) if name == "val_loss" else float(rec.get("distance", {}).get(name, np.nan))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def predictive_power(table: Table, *, boot: int = 1000, seed: int = 0) -> list[dict]:
    """One row per (signal, epoch 1…epochs): ``{"signal", "epoch", "rho", "lo", "hi", "n"}``.

    Raises:
        LSHUsageError: ``boot`` < 1.
    """
    check_int("boot", boot, 1)
    keys, seeds = table.keys, table.settings.seeds
    final = np.array([[table.run(k, s)["final"]["test_ppl"] for s in seeds] for k in keys])
    rng = np.random.default_rng(derive_seed(seed, "bootstrap"))
    draws = rng.integers(0, len(keys), size=(boot, len(keys)))
    rows = []
    for name in signals(table):
        for epoch in range(1, table.settings.epochs + 1):
            x = np.array([[_value(table.run(k, s)["epochs"][epoch], name) for s in seeds] for k in keys])
            rho = _spearman(x.ravel(), final.ravel())
            samples = np.array([_spearman(x[d].ravel(), final[d].ravel()) for d in draws])
            samples = samples[np.isfinite(samples)]
            lo, hi = (np.percentile(samples, [2.5, 97.5]) if samples.size else (np.nan, np.nan))
            rows.append({"signal": name, "epoch": epoch, "rho": rho, "lo": float(lo), "hi": float(hi),
                         "n": int(x.size)})
    return rows
