"""The experiment-level TensorBoard log ``<experiment>/tensorboard/``, written by the driver from the search's files.

Ray-free (``torch.utils.tensorboard`` writes the event files). One run per candidate
(``tensorboard/<cid>/``) so TensorBoard overlays their curves on shared tags, and one run
``tensorboard/search/`` for the search as a whole. Steps are a candidate's own epochs, or rounds
(1-based) for the search run.

Per candidate run:

* ``ranking/<metric>`` (``ranking/hybrid``, ``ranking/ls``, ``ranking/loss``: the search's ``--metric``)
  — the value that ranked it in each round it took part in, at its epoch then (``lsh/state.json``:
  for ``hybrid`` its mean rank, for ``ls`` its LS distance in the round's fit, for ``loss`` its
  validation loss);
* ``ls_distance/common_fit`` — its distance to the reference's last spectrum at every boundary
  epoch in one embedding of every spectrum of the search (Fig. 1-B);
* ``ls_distance/own_fit`` — what the trial itself reported (reference + its own history only);
* ``perplexity/val`` — every epoch (Fig. 1-C); ``perplexity/final_val``, ``perplexity/final_test``
  for finalists;
* ``ls/spectrum`` — its LS at each boundary as a histogram (finite exponents);
* HParams: its hyperparameters → ``hparams/final_val_ppl``, ``hparams/final_test_ppl``,
  ``hparams/last_val_ppl``, ``hparams/metric_round_<r>`` (its value in round r).

Search run: ``pool/size`` and ``best_so_far/ranking_value`` (the head of each round's ranking),
``best_so_far/val_ppl`` (lowest validation perplexity among the candidates ranked so far),
``ls_space`` (the round's LS-space scatter as an image, step = round), the dense reference's
``reference/val_ppl``, ``reference/val_loss``, ``reference/train_loss`` and its LS curve
``reference/ls_max``, ``reference/ls_mean``, ``reference/ls_variance``, ``reference/ls_neg_inf`` (from
its epoch events, as each epoch finishes) and ``reference/ls`` (histogram of every epoch's spectrum,
once it is done), and the unigram baseline.

While the search runs the log is rebuilt after every epoch event (candidates' and the reference's)
and round (:mod:`lsh_tune.search.views.session`). The whole log is rebuilt on each call (:func:`write_tensorboard`; its steps restart at the
beginning, which TensorBoard takes as a restart and replaces the old points). It is built in a
local temporary directory and copied into the experiment's :class:`~lsh_tune.storage.Storage`,
so an object-store experiment gets one too.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lsh_tune.search.keys import REFERENCE_LS_KEYS
from lsh_tune.search.layout import TENSORBOARD_DIR
from lsh_tune.search.views.history import SearchHistory
from lsh_tune.storage import Storage

__all__ = ["SEARCH_RUN", "write_tensorboard"]

#: The run that holds the search-level series.
SEARCH_RUN = "search"


def _spectra(writer, tag: str, items) -> None:
    """One histogram of the finite exponents of each ``(epoch, spectrum)`` (−inf ones are pruned directions)."""
    for epoch, spectrum in items:
        finite = spectrum[np.isfinite(spectrum)]
        if finite.size:
            writer.add_histogram(tag, finite, epoch)


def _ranking_tag(config) -> str:
    """The candidate runs' tag of the values that ranked them: ``ranking/<metric>`` of the search's config."""
    return f"ranking/{config.metric}"


def _hparam_value(value):
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _candidate_metrics(history: SearchHistory, cid: str) -> dict[str, float]:
    c = history.pool.candidates[cid]
    metrics = {f"hparams/metric_round_{c.born_round + j + 1}": float(v) for j, v in enumerate(c.history)
               if np.isfinite(v)}
    curve = history.val_curve(cid)
    if curve:
        metrics["hparams/last_val_ppl"] = curve[max(curve)]
    for key in ("val_ppl", "test_ppl"):
        if history.final(cid, key) is not None:
            metrics[f"hparams/final_{key}"] = history.final(cid, key)
    return metrics


def _write_candidate(writer, history: SearchHistory, cid: str, common: dict, discrete: dict, names: list) -> None:
    from torch.utils.tensorboard.summary import hparams

    c = history.pool.candidates[cid]
    for epoch, value in zip(c.epochs, c.history):
        writer.add_scalar(_ranking_tag(history.config), float(value), int(epoch))
    for epoch, value in common.get(cid, {}).items():
        writer.add_scalar("ls_distance/common_fit", value, epoch)
    for e in history.events_of("epoch"):
        if e.get("cid") == cid and e.get("ls_distance_own_fit") is not None:
            writer.add_scalar("ls_distance/own_fit", float(e["ls_distance_own_fit"]), int(e["epoch"]))
    for epoch, value in history.val_curve(cid).items():
        writer.add_scalar("perplexity/val", value, epoch)
    final_epoch = int((c.final or {}).get("epoch") or history.config.resolved_max_epochs())
    for key in ("val_ppl", "test_ppl"):
        if history.final(cid, key) is not None:
            writer.add_scalar(f"perplexity/final_{key[:-4]}", history.final(cid, key), final_epoch)
    _spectra(writer, "ls/spectrum", history.spectra(cid).items())
    metrics = _candidate_metrics(history, cid)
    exp, ssi, sei = hparams({k: _hparam_value(c.config[k]) for k in names}, {m: 0.0 for m in _all_metric_names(
        history)}, discrete)
    for summary in (exp, ssi, sei):
        writer.file_writer.add_summary(summary)
    for name, value in metrics.items():
        writer.add_scalar(name, value, 0)


def _all_metric_names(history: SearchHistory) -> list[str]:
    rounds = [f"hparams/metric_round_{r + 1}" for r in range(len(history.pool.rounds))]
    return ["hparams/final_val_ppl", "hparams/final_test_ppl", "hparams/last_val_ppl", *rounds]


def _write_search(writer, history: SearchHistory) -> None:
    best_ppl = np.inf
    for r, decided in enumerate(history.pool.rounds):
        ranked = history.ranked(r)
        writer.add_scalar("pool/size", len(ranked), r + 1)
        if ranked:
            writer.add_scalar("best_so_far/ranking_value", ranked[0].value, r + 1)
        best_ppl = min([best_ppl] + [e.val_ppl for e in ranked if e.val_ppl is not None])
        if np.isfinite(best_ppl):
            writer.add_scalar("best_so_far/val_ppl", best_ppl, r + 1)
        if history.has_spectra:
            writer.add_image("ls_space", _round_image(history, r), r + 1, dataformats="HWC")
    for epoch, value in history.reference_val_curve().items():
        writer.add_scalar("reference/val_ppl", value, epoch)
    for e in history.events_of("reference_epoch"):  # as each epoch of the reference finishes
        for key in ("val_loss", "train_loss", *REFERENCE_LS_KEYS):
            if e.get(key) is not None:
                writer.add_scalar(f"reference/{key}", float(e[key]), int(e["epoch"]))
    if history.has_spectra:
        _spectra(writer, "reference/ls", zip(history.reference_epochs(), history.ls_fit.reference))
    for split, value in history.unigram().items():
        writer.add_scalar(f"baseline/unigram_{split}_ppl", value, 0)


def _round_image(history: SearchHistory, r: int) -> np.ndarray:
    """Round ``r``'s LS-space figure as an (H, W, 3) uint8 image."""
    from matplotlib import image as mpimg

    from lsh_tune.search.views.figures import figure_png, round_space_figure

    rgba = mpimg.imread(io.BytesIO(figure_png(round_space_figure(history, r), dpi=80)), format="png")
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def write_tensorboard(experiment: Storage | str | os.PathLike | SearchHistory) -> str:
    """(Re)write ``<experiment>/tensorboard/`` from the experiment's files; returns its location.

    Point ``tensorboard --logdir`` at the returned location.
    """
    from torch.utils.tensorboard import SummaryWriter

    history = experiment if isinstance(experiment, SearchHistory) else SearchHistory.load(experiment)
    store = history.storage
    names = list(history.config.space.names)
    discrete = {n: list(history.config.space.choices_of(n)) for n in names if n != "death_rate"}
    common = history.common_distances() if history.has_spectra else {}
    local = Path(tempfile.mkdtemp(prefix="lsh-tb-"))
    try:
        with SummaryWriter(str(local / SEARCH_RUN)) as w:
            _write_search(w, history)
        for cid in history.pool.candidates:
            with SummaryWriter(str(local / cid)) as w:
                _write_candidate(w, history, cid, common, discrete, names)
        store.delete(TENSORBOARD_DIR)
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            store.upload(path, f"{TENSORBOARD_DIR}/{path.relative_to(local).as_posix()}")
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return store.uri_of(TENSORBOARD_DIR)
