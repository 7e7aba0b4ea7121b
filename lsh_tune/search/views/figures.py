"""Figures of a search (matplotlib, Ray-free), drawn from its experiment files, into ``<experiment>/figures/``.

* ``fig1.png`` — the paper's Fig. 1 for this search: (A) the LS (exponent λ_i against its index i,
  nats per step) of the dense reference, of the chosen candidate and of the candidate the first
  round removed first, at the epochs where the reference and the chosen candidate have one (at most
  five, the first and the last among them); (B) every candidate's LS distance to the
  reference's last spectrum over its epochs (one embedding of every spectrum of the search,
  :meth:`~lsh_tune.search.views.history.SearchHistory.common_distances`); (C) every candidate's
  validation perplexity over its epochs, the dense reference's and the unigram baseline.
* ``ls_space_round<r>.png`` — round r's LS space (the embedding it was ranked in): the reference's
  trajectory and every ranked candidate's, its last point kept (●) or removed (×), coloured by its
  validation perplexity then.
* ``ranking_vs_final.png`` — per round, each candidate's ranking value against its final validation
  perplexity (finalists) or its validation perplexity when ranked (the others).

Every plotted artist carries a ``gid`` naming what it shows (``ppl:<cid>``, ``dist:<cid>``,
``ls:<epoch>:<cid>``, ``points:kept`` …) so tests can check the data behind each picture.
"""
from __future__ import annotations

import io
import math
import os

import numpy as np

from lsh_tune.search.layout import FIG1_FILE, FIGURES_DIR, RANKING_VS_FINAL_FILE, round_space_file
from lsh_tune.search.views.history import SearchHistory
from lsh_tune.storage import Storage

__all__ = ["fig1", "round_space_figure", "ranking_vs_final", "write_figures", "figure_png"]

_REFERENCE = "dense reference"
_COLOURS = {"reference": "black", "best": "tab:green", "removed": "tab:red", "other": "0.65"}
_MAX_LS_PANELS = 5


def _figure(**kwargs):
    """A matplotlib ``Figure`` outside pyplot (no global state: safe in a background thread, nothing to close)."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _roles(history: SearchHistory) -> dict[str, str]:
    """cid -> ``best``/``removed`` for the two highlighted candidates."""
    roles = {}
    if history.first_removed() is not None:
        roles[history.first_removed()] = "removed"
    if history.best_cid() is not None:
        roles[history.best_cid()] = "best"
    return roles


def _label(history: SearchHistory, cid: str, role: str) -> str:
    what = {"best": "chosen", "removed": "first removed"}[role]
    return f"{cid} ({what})"


def _ls_epochs(history: SearchHistory) -> list[int]:
    """Epochs where both the reference and the chosen candidate have a spectrum (at most 5, first and last kept)."""
    epochs = set(history.reference_epochs())
    best = history.best_cid()
    if best is not None and set(history.spectra(best)) & epochs:
        epochs &= set(history.spectra(best))
    epochs = sorted(epochs)
    if len(epochs) > _MAX_LS_PANELS:
        idx = np.linspace(0, len(epochs) - 1, _MAX_LS_PANELS).round().astype(int)
        epochs = [epochs[i] for i in sorted(set(idx))]
    return epochs


def _plot_ls(ax, spectrum: np.ndarray, colour: str, label: str, gid: str) -> None:
    y = np.where(np.isfinite(spectrum), spectrum, np.nan)  # −inf exponents (pruned directions) leave gaps
    (line,) = ax.plot(np.arange(1, len(y) + 1), y, color=colour, lw=1.4, label=label)
    line.set_gid(gid)


def _panel_a(fig, grid, history: SearchHistory, roles: dict[str, str]) -> None:
    epochs = _ls_epochs(history)
    ref = dict(zip(history.reference_epochs(), history.ls_fit.reference))
    sub = grid.subgridspec(1, len(epochs), wspace=0.08)
    first = None
    for k, epoch in enumerate(epochs):
        ax = fig.add_subplot(sub[0, k], sharey=first)
        first = first or ax
        if epoch in ref:
            _plot_ls(ax, ref[epoch], _COLOURS["reference"], _REFERENCE, f"ls:{epoch}:reference")
        for cid, role in roles.items():
            spectrum = history.spectra(cid).get(epoch)
            if spectrum is not None:
                _plot_ls(ax, spectrum, _COLOURS[role], _label(history, cid, role), f"ls:{epoch}:{cid}")
        when = "at initialisation" if epoch == 0 else f"after epoch {epoch}"
        ax.set_title(f"A: Lyapunov spectra {when}" if k == 0 else when, fontsize=10, loc="left" if k == 0 else "center")
        ax.set_xlabel("exponent index i")
        ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
        if k == 0:
            ax.set_ylabel("λ_i (nats / step)")
            ax.legend(fontsize=8, loc="lower left")
        else:
            ax.tick_params(labelleft=False)


def _curves(ax, curves: dict[str, dict[int, float]], roles: dict[str, str], history: SearchHistory, kind: str) -> None:
    """One line per candidate: grey, the highlighted ones on top in colour."""
    from matplotlib.ticker import MaxNLocator

    order = sorted(curves, key=lambda c: c in roles)
    for cid in order:
        curve = curves[cid]
        if not curve:
            continue
        role = roles.get(cid, "other")
        label = _label(history, cid, role) if role != "other" else None
        (line,) = ax.plot(list(curve), list(curve.values()), marker="o", ms=3, color=_COLOURS[role],
                          lw=2.0 if role != "other" else 0.9, label=label, zorder=3 if role != "other" else 2)
        line.set_gid(f"{kind}:{cid}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _panel_b(ax, history: SearchHistory, roles: dict[str, str]) -> None:
    space = history.ls_fit.space
    _curves(ax, history.common_distances(), roles, history, "dist")
    ax.set_xlabel("epoch (candidate's own training)")
    ax.set_ylabel(f"LS distance to dense reference\n({space.distance.upper()} in {space.embedding.upper()} space)")
    ax.set_title("B: distance to the dense reference in LS space", fontsize=10, loc="left")
    ax.legend(fontsize=8)


def _panel_c(ax, history: SearchHistory, roles: dict[str, str]) -> None:
    from matplotlib.ticker import FuncFormatter

    _curves(ax, {cid: history.val_curve(cid) for cid in history.pool.candidates}, roles, history, "ppl")
    ref = history.reference_val_curve()
    if ref:
        (line,) = ax.plot(list(ref), list(ref.values()), color="black", ls="--", marker="s", ms=3, label=_REFERENCE)
        line.set_gid("ppl:reference")
    unigram = history.unigram().get("valid")
    if unigram:
        ax.axhline(unigram, color="0.3", ls=":", lw=1.2, label=f"add-one unigram ({unigram:.0f})", gid="ppl:unigram")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:.0f}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("epoch (own training)")
    ax.set_ylabel("validation perplexity (log scale)")
    ax.set_title("C: validation perplexity", fontsize=10, loc="left")
    ax.legend(fontsize=8)


def fig1(history: SearchHistory):
    """The paper's Fig. 1 for this search (see the module docstring); returns the Figure."""
    roles = _roles(history)
    fig = _figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.1))
    _panel_a(fig, grid[0, :], history, roles)
    _panel_b(fig.add_subplot(grid[1, 0]), history, roles)
    _panel_c(fig.add_subplot(grid[1, 1]), history, roles)
    fig.suptitle(f"LSH search {history.config.name}: LS of the dense reference and of two candidates (A), "
                 "their distance to it (B) and their perplexity (C)", fontsize=11)
    return fig


def round_space_figure(history: SearchHistory, r: int):
    """Round ``r``'s LS space (see the module docstring); returns the Figure."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    space = history.round_space(r)
    ranked = history.ranked(r)
    fig = _figure(figsize=(7.5, 6))
    ax = fig.subplots()
    ref = space.reference
    ax.plot(ref[:, 0], ref[:, 1], "-o", color="black", ms=4, lw=1.5, label=_REFERENCE, gid="trajectory:reference")
    for k, epoch in enumerate(history.reference_epochs()):
        ax.annotate(str(epoch), ref[k], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.plot(*ref[-1], marker="*", ms=16, color="black", ls="none", label="dense reference, trained (ranked against)",
            gid="point:reference")
    ppl = np.array([e.val_ppl if e.val_ppl is not None else np.nan for e in ranked], dtype=float)
    finite = ppl[np.isfinite(ppl)]
    norm = Normalize(*(finite.min(), finite.max()) if finite.size else (0, 1))
    cmap = matplotlib.colormaps["viridis"]
    for e, p in zip(ranked, ppl):
        pts = space.candidates[e.cid]
        colour = cmap(norm(p)) if np.isfinite(p) else "0.5"
        ax.plot(pts[:, 0], pts[:, 1], "-.", color=colour, lw=1.0, alpha=0.8, marker=".", ms=4,
                gid=f"trajectory:{e.cid}")
        ax.annotate(e.cid + (" (not learning)" if e.not_learning else ""), pts[-1], fontsize=8, xytext=(4, -10),
                    textcoords="offset points")
    for kept, marker, label in ((True, "o", "kept"), (False, "X", "removed")):
        sel = [i for i, e in enumerate(ranked) if e.kept == kept]
        pts = np.array([space.candidates[ranked[i].cid][-1] for i in sel]).reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], c=ppl[sel], cmap=cmap, norm=norm, marker=marker, s=90, edgecolors="black",
                   linewidths=0.6, label=f"{label} (last point)", zorder=4, gid=f"points:{'kept' if kept else 'removed'}")
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    bar.set_label("validation perplexity at this round")
    emb = history.ls_fit.space.embedding.upper()
    ax.set_xlabel(f"LS space {'PC' if emb in ('PCA', 'RAW') else 'dim'} 1")
    ax.set_ylabel(f"LS space {'PC' if emb in ('PCA', 'RAW') else 'dim'} 2")
    ax.set_title(f"Round {r + 1}, LS space ({emb}): the dense reference (labels: its epochs)\n"
                 f"and the trajectories of the {len(ranked)} candidates it ranked", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def ranking_vs_final(history: SearchHistory):
    """Per round: ranking value against final (or at-round) validation perplexity; returns the Figure."""
    from lsh_tune.search.views.report import spearman_by_round

    n = len(history.pool.rounds)
    fig = _figure(figsize=(4.2 * max(1, n), 4))
    axes = fig.subplots(1, max(1, n), squeeze=False)
    rhos = spearman_by_round(history)
    metric = history.signal.label
    for r, ax in enumerate(axes[0][:n]):
        ranked = [e for e in history.ranked(r) if math.isfinite(e.value)]
        final = [(e.value, history.final(e.cid), e.cid) for e in ranked if history.final(e.cid) is not None]
        other = [(e.value, e.val_ppl, e.cid) for e in ranked if history.final(e.cid) is None and e.val_ppl]
        for rows, style, label, gid in ((final, dict(marker="o", color="tab:green"), "final (finalists)", "final"),
                                        (other, dict(marker="o", facecolors="none", edgecolors="tab:red"),
                                         "at this round (not finalists)", "at_round")):
            if rows:
                ax.scatter([v for v, _, _ in rows], [p for _, p, _ in rows], label=label, gid=f"{gid}:{r}", **style)
                for v, p, cid in rows:
                    ax.annotate(cid, (v, p), fontsize=7, xytext=(3, 3), textcoords="offset points")
        rho = rhos[r]["rho"]
        ax.set_title(f"round {r + 1}" + ("" if rho is None else f": Spearman ρ {rho:+.2f} (n = {rhos[r]['n']})"),
                     fontsize=10)
        ax.set_xlabel(f"ranking value ({metric}, lower ranks first)")
        ax.set_ylabel("validation perplexity")
        ax.legend(fontsize=7)
    return fig


def figure_png(fig, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _save(fig, store: Storage, name: str) -> str:
    store.write_bytes(f"{FIGURES_DIR}/{name}", figure_png(fig))
    return store.uri_of(f"{FIGURES_DIR}/{name}")


def write_figures(experiment: Storage | str | os.PathLike | SearchHistory) -> list[str]:
    """Draw every figure that the experiment's data allows into ``<experiment>/figures/``; returns their locations.

    A search ranked by loss has no spectra: only the perplexity-based figures are drawn then.
    """
    history = experiment if isinstance(experiment, SearchHistory) else SearchHistory.load(experiment)
    store = history.storage
    written = []
    if history.has_spectra:
        written.append(_save(fig1(history), store, FIG1_FILE))
        for r in range(len(history.pool.rounds)):
            written.append(_save(round_space_figure(history, r), store, round_space_file(r)))
    if history.pool.rounds:
        written.append(_save(ranking_vs_final(history), store, RANKING_VS_FINAL_FILE))
    return written
