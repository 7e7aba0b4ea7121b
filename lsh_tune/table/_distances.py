"""Per-epoch LS distances of a tabulated run to the dense reference of its seed (Ray-free).

For epoch ``e`` of a run and each ``<state>/<embedding>/<metric>`` of the table, the LS space is
fitted on the reference's whole history (epochs 0…E, as a search uses the trained reference) and
the run's history 0…``e``, and the distance is measured from the reference's last point to the
run's point at ``e`` (:func:`lsh_tune.lyapunov.ls_distances`, the fit each trial reports as its
``ls_distance``; a search's pool-wide ranking refits over the whole pool, which
:mod:`lsh_tune.table.replay` does from the stored spectra).

The logged distances replace −inf exponents by 0 (:data:`TABLE_NEG_INF_FILL`, the authors' rule, what
the committed tables were built with), so that every run of a table is measured alike; a search
ranks with the floor rule of :func:`lsh_tune.lyapunov.distance.fill_neg_inf` (a replay refits with it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lsh_tune.lyapunov import ls_distances
from lsh_tune.table._format import REFERENCE_KEY, TableSettings, read_run, write_run

__all__ = ["TABLE_NEG_INF_FILL", "annotate_run", "annotate_table", "history", "run_distances"]

#: The −inf rule of a table's logged distances (see the module docstring).
TABLE_NEG_INF_FILL = 0.0


def history(run: dict, state: str, upto: int | None = None, top: int | None = None) -> np.ndarray:
    """(epochs, N) spectra of ``run`` under ``state`` for epochs 0…``upto`` (all when ``None``);
    (epochs, ``top``) with only the leading exponents (what ``LSConfig(top=…)`` computes: the
    spectra are stored sorted descending)."""
    recs = run["epochs"] if upto is None else run["epochs"][:upto + 1]
    spectra = np.asarray([r["ls"][state] for r in recs], dtype=np.float64)
    return spectra if top is None else spectra[:, :top]


def run_distances(run: dict, reference: dict, state: str, embedding: str, metric: str, *, top: int | None = None,
                  seed: int = 0, neg_inf_fill: float | str = TABLE_NEG_INF_FILL) -> list[float]:
    """Distance at every epoch 0…E of ``run`` (see the module docstring), from the ``top`` leading
    exponents only if set; ``neg_inf_fill``: the −inf rule (:func:`lsh_tune.lyapunov.distance.fill_neg_inf`)."""
    ref, full = history(reference, state, top=top), history(run, state, top=top)
    return [float(ls_distances(ref, {"c": full[:e + 1]}, embedding=embedding, metric=metric, seed=seed,
                               neg_inf_fill=neg_inf_fill)[0]["c"]) for e in range(len(full))]


def annotate_run(run: dict, reference: dict, settings: TableSettings, *, seed: int = 0) -> dict:
    """``run`` with ``distance`` set on every epoch record (see the module docstring)."""
    for state in settings.ls_states:
        for emb in settings.embeddings:
            for metric in settings.metrics:
                values = run_distances(run, reference, state, emb, metric, seed=seed)
                for rec, d in zip(run["epochs"], values):
                    rec.setdefault("distance", {})[f"{state}/{emb}/{metric}"] = d
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
