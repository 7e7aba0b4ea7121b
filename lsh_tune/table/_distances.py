"""Per-epoch LS distances of a tabulated run to the dense reference of its seed (Ray-free).

For epoch ``e`` of a run and each ``<state>/<embedding>/<metric>`` of the table, the LS space is
fitted on the reference's whole history (epochs 0…E, as a search uses the trained reference) and
the run's history 0…``e``, and the distance is measured from the reference's last point to the
run's point at ``e`` (:func:`lsh_tune.lyapunov.ls_distances`, the fit each trial reports as its
``ls_distance``; a search's pool-wide ranking refits over the whole pool, which
:mod:`lsh_tune.table.replay` does from the stored spectra).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lsh_tune.lyapunov import ls_distances
from lsh_tune.table._format import REFERENCE_KEY, TableSettings, read_run, write_run

__all__ = ["annotate_run", "annotate_table", "history"]


def history(run: dict, state: str, upto: int | None = None) -> np.ndarray:
    """(epochs, N) spectra of ``run`` under ``state`` for epochs 0…``upto`` (all when ``None``)."""
    recs = run["epochs"] if upto is None else run["epochs"][:upto + 1]
    return np.asarray([r["ls"][state] for r in recs], dtype=np.float64)


def annotate_run(run: dict, reference: dict, settings: TableSettings, *, seed: int = 0) -> dict:
    """``run`` with ``distance`` set on every epoch record (see the module docstring)."""
    for state in settings.ls_states:
        ref = history(reference, state)
        full = history(run, state)
        for e, rec in enumerate(run["epochs"]):
            dist = rec.setdefault("distance", {})
            for emb in settings.embeddings:
                for metric in settings.metrics:
                    d, _ = ls_distances(ref, {"c": full[:e + 1]}, embedding=emb, metric=metric, seed=seed)
                    dist[f"{state}/{emb}/{metric}"] = float(d["c"])
    return run


def _needs(run: dict, settings: TableSettings) -> bool:
    names = set(settings.distance_names())
    return any(not names <= set(r.get("distance", {})) for r in run["epochs"])


def annotate_table(table: str | Path, settings: TableSettings, configs: list[dict]) -> int:
    """Add the distances to every finished run of ``table`` that lacks them (its seed's reference
    finished); returns how many run files were rewritten (all-or-nothing each)."""
    n = 0
    for seed in settings.seeds:
        reference = read_run(table, REFERENCE_KEY, seed)
        if reference is None:
            continue
        for c in configs:
            run = read_run(table, c["key"], seed)
            if run is not None and _needs(run, settings):
                write_run(table, annotate_run(run, reference, settings))
                n += 1
    return n
