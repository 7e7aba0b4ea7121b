"""``lsh-tune report``: what a finished or interrupted search chose, how, and where its time went.

Ray-free; reads the experiment only (:class:`~lsh_tune.search.views.history.SearchHistory`).
:func:`build_report` returns a JSON-able dict, :func:`render_markdown` the same as Markdown (also
what the terminal shows). Sections:

* the chosen configuration and its validation/test perplexity and density, against the add-one
  unigram of the search's tokens, the dense reference and the other finalists;
* one row per round: the ranking with its metric values (best first; the ranking signal is named,
  :mod:`lsh_tune.search.signals`), the candidates that were not learning and why (ranked behind every
  learning one), removed, refilled and by which generator;
* the time split of ``slots × wall time``: dense reference, candidate training, LS, trial
  starts/restores, state saves, rounds waiting for their last candidates and the rest
  (:func:`time_split`), from the epoch log and the events;
* how often each hyperparameter value survived each round (kept / ranked);
* where final perplexities are known, Spearman's ρ (``scipy.stats.spearmanr``) of each round's
  metric with the final validation perplexity, over the candidates of that round that finished.
"""
from __future__ import annotations

import math
from typing import Any

from lsh_tune.search.signals import learning_rule_text
from lsh_tune.search.views.console import format_duration
from lsh_tune.search.views.history import SearchHistory
from lsh_tune.search.views.progress import config_label

__all__ = ["build_report", "render_markdown", "time_split", "survival", "spearman_by_round"]


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else float(value) / float(base)


def _finalists(history: SearchHistory) -> list[dict]:
    best = history.best_cid()
    out = []
    for c in history.pool.candidates.values():
        if c.status not in ("final", "finished"):
            continue
        final = c.final or {}
        out.append({"cid": c.cid, "config": dict(c.config), "chosen": c.cid == best, "status": c.status,
                    "val_ppl": final.get("val_ppl"), "test_ppl": final.get("test_ppl"),
                    "density": final.get("density"), "epoch": final.get("epoch")})
    return sorted(out, key=lambda f: (not f["chosen"], f["val_ppl"] if f["val_ppl"] is not None else math.inf))


def _rounds(history: SearchHistory) -> list[dict]:
    out = []
    for r, decided in enumerate(history.pool.rounds):
        out.append({"round": r, "pool": len(decided["ranking"]),
                    "ranking": [[cid, float(v)] for cid, v in decided["ranking"]],
                    "not_learning": dict(decided.get("not_learning") or {}),
                    "removed": list(decided["removed"]), "refilled": list(decided["generated"]),
                    "generator": history.hpo if decided["generated"] else None})
    return out


def survival(history: SearchHistory) -> dict[str, list[dict[str, list[int]]]]:
    """hyperparameter -> one ``{value: [kept, ranked]}`` per round (hyperparameters that took a single
    value in the whole search are left out: they tell nothing)."""
    names = list(history.config.space.names)
    out: dict[str, list[dict[str, list[int]]]] = {n: [] for n in names}
    for r in range(len(history.pool.rounds)):
        counts: dict[str, dict[str, list[int]]] = {n: {} for n in names}
        for entry in history.ranked(r):
            config = history.pool.candidates[entry.cid].config
            for n in names:
                key = f"{config[n]:g}" if isinstance(config[n], float) else str(config[n])
                kept_ranked = counts[n].setdefault(key, [0, 0])
                kept_ranked[0] += int(entry.kept)
                kept_ranked[1] += 1
        for n in names:
            out[n].append(dict(sorted(counts[n].items())))
    return {n: rounds for n, rounds in out.items() if len({v for r in rounds for v in r}) > 1}


def spearman_by_round(history: SearchHistory) -> list[dict[str, Any]]:
    """Per round: ``n`` candidates of it whose final validation perplexity is known, ``rho`` and ``p``
    (``None`` below two, or when either side is constant, e.g. tied ranks; with two, ρ is ±1 and p
    undefined)."""
    from scipy.stats import spearmanr

    out = []
    for r in range(len(history.pool.rounds)):
        pairs = [(e.value, history.final(e.cid)) for e in history.ranked(r)]
        pairs = [(v, f) for v, f in pairs if f is not None and math.isfinite(v)]
        rho = p = None
        if len({v for v, _ in pairs}) >= 2 and len({f for _, f in pairs}) >= 2:  # constant input: ρ undefined
            res = spearmanr([v for v, _ in pairs], [f for _, f in pairs])
            rho = None if math.isnan(res.statistic) else float(res.statistic)
            p = None if math.isnan(res.pvalue) else float(res.pvalue)
        out.append({"round": r, "n": len(pairs), "rho": rho, "p": p})
    return out


def time_split(history: SearchHistory) -> dict[str, float]:
    """Where ``wall`` time × ``slots`` went, in seconds (they add up to it):

    * ``reference_s`` — the dense reference's epochs and spectra;
    * ``training_s`` — candidate training and validation; ``ls_s`` — candidate spectra;
    * ``setup_s`` — trial starts and restores (model built, state loaded, epoch-0 spectrum: the
      epoch log's ``setup_s``); ``save_s`` — each epoch's full state written to the experiment's storage;
    * ``barrier_s`` — slots idle while a round waits for its last candidates (from the first of its
      candidates reaching the round's boundary to the round's decision);
    * ``waiting_s`` — the rest: Tune placing, pausing and checkpointing trials, the driver, slots idle
      outside a round's wait.

    Records written before ``setup_s``/``save_s`` were logged count those as waiting.
    """
    ls_by_epoch = {(e["cid"], int(e["epoch"])): float(e.get("ls_time_s") or 0.0) for e in history.events_of("epoch")}
    epoch_s = ls = setup = save = 0.0
    intervals, ends = [], {}
    for rec in history.epoch_log:
        start, end = float(rec["start"]), float(rec["time"])
        s_setup, s_save = float(rec.get("setup_s") or 0.0), float(rec.get("save_s") or 0.0)
        epoch_s += end - start
        ls += float(rec.get("ls_time_s", ls_by_epoch.get((rec["cid"], int(rec["epoch"])), 0.0)))
        setup, save = setup + s_setup, save + s_save
        intervals.append((start - s_setup, end + s_save))
        ends[(rec["cid"], int(rec["epoch"]))] = end + s_save
    reference = 0.0
    for e in history.events_of("reference_epoch"):
        took = float(e.get("epoch_time_s") or 0.0) + float(e.get("ls_time_s") or 0.0)
        reference += took
        intervals.append((float(e["time"]) - took, float(e["time"])))
    starts = [e["time"] for e in history.events_of("search_start")]
    last = [e["time"] for e in history.events] + [b for _, b in intervals]
    begin = min(starts + [a for a, _ in intervals], default=None)
    wall = (max(last) - begin) if begin is not None and last else 0.0
    slots = history.slots()
    barrier = _idle_in(intervals, _round_waits(history, ends), slots)
    busy = epoch_s + setup + save + reference
    return {"wall_s": wall, "slots": slots, "reference_s": reference, "training_s": epoch_s - ls, "ls_s": ls,
            "setup_s": setup, "save_s": save, "barrier_s": barrier,
            "waiting_s": max(0.0, wall * slots - busy - barrier)}


def _round_waits(history: SearchHistory, ends: dict) -> list[tuple[float, float]]:
    """(from, to) of each round's wait: the first of its ranked candidates' boundary epochs ending
    (its state saved) to the round's decision (its ``round`` event)."""
    decided = {int(e["round"]): float(e["time"]) for e in history.events_of("round")}
    waits = []
    for r, at in sorted(decided.items()):
        reached = [ends[(c.cid, c.epoch)] for c in history.ranked(r) if (c.cid, c.epoch) in ends]
        if reached and min(reached) < at:
            waits.append((min(reached), at))
    return waits


def _idle_in(intervals: list[tuple[float, float]], windows: list[tuple[float, float]], slots: int) -> float:
    """Slot-seconds idle (``slots`` minus the busy ``intervals`` covering a moment, at least 0) inside
    the union of ``windows``."""
    if not windows:
        return 0.0
    marks = sorted({t for pair in intervals + windows for t in pair})
    idle = 0.0
    for a, b in zip(marks, marks[1:]):
        mid = (a + b) / 2
        if any(w0 <= mid < w1 for w0, w1 in windows):
            running = sum(s <= mid < e for s, e in intervals)
            idle += max(0, slots - running) * (b - a)
    return idle


def build_report(history: SearchHistory) -> dict[str, Any]:
    """The report of a search (see the module docstring) as a JSON-able dict."""
    cfg = history.config
    unigram = history.unigram()
    reference = history.reference_scores()
    finalists = _finalists(history)
    chosen = next((f for f in finalists if f["chosen"]), None)
    for row in [reference] + finalists:
        row["test_vs_unigram"] = _ratio(row.get("test_ppl"), unigram.get("test"))
    if chosen is not None:
        chosen["val_vs_reference"] = _ratio(chosen["val_ppl"], reference.get("val_ppl"))
    status = "finished" if history.finished else f"interrupted after {len(history.pool.rounds)} round(s), " \
                                                  f"phase {history.pool.phase}"
    return {"experiment": history.storage.uri_of(), "name": cfg.name, "status": status,
            "settings": {k: getattr(cfg, k) for k in ("model", "preset", "corpus", "max_tokens", "sparsity", "hpo",
                                                      "metric", "pool_size", "rounds_every", "final_k")}
            | {"max_epochs": cfg.resolved_max_epochs(), "preset": cfg.size_label,
               "signal": history.signal.describe(), "untrained_ppl": history.pool.config.untrained_ppl},
            "unigram": unigram, "reference": reference, "chosen": chosen, "finalists": finalists,
            "rounds": _rounds(history), "time": time_split(history), "survival": survival(history),
            "spearman": spearman_by_round(history)}


# ------------------------------------------------------------------ Markdown
def _num(value: Any, fmt: str = ".1f") -> str:
    return "–" if value is None else format(float(value), fmt)


def _scores_table(rep: dict) -> list[str]:
    lines = ["| | val ppl | test ppl | density | test / unigram |", "|---|---|---|---|---|",
             f"| add-one unigram | {_num(rep['unigram'].get('valid'))} | {_num(rep['unigram'].get('test'))} | – | 1.00 |"]
    ref = rep["reference"]
    lines.append(f"| dense reference | {_num(ref.get('val_ppl'))} | {_num(ref.get('test_ppl'))} | 1.000 | "
                 f"{_num(ref.get('test_vs_unigram'), '.2f')} |")
    for f in rep["finalists"]:
        name = f"**{f['cid']} (chosen)**" if f["chosen"] else f"{f['cid']} (finalist)"
        lines.append(f"| {name} {config_label(f['config'])} | {_num(f['val_ppl'])} | {_num(f['test_ppl'])} | "
                     f"{_num(f['density'], '.3f')} | {_num(f['test_vs_unigram'], '.2f')} |")
    return lines


def _rounds_table(rep: dict) -> list[str]:
    lines = ["| round | pool | ranking, best first (metric) | removed | refilled |", "|---|---|---|---|---|"]
    for r in rep["rounds"]:
        why = r.get("not_learning") or {}
        ranking = ", ".join(f"{cid} {v:.4g}" + (f" (not learning: {why[cid]})" if cid in why else "")
                            for cid, v in r["ranking"])
        refill = f"{', '.join(r['refilled'])} ({r['generator']})" if r["refilled"] else "–"
        lines.append(f"| {r['round'] + 1} | {r['pool']} | {ranking} | {', '.join(r['removed']) or '–'} | {refill} |")
    return lines


def _survival_table(rep: dict) -> list[str]:
    n = len(rep["rounds"])
    lines = ["| hyperparameter | " + " | ".join(f"round {r + 1}" for r in range(n)) + " |",
             "|---|" + "---|" * n]
    for name, per_round in rep["survival"].items():
        cells = [", ".join(f"{v} {k}/{t}" for v, (k, t) in counts.items()) for counts in per_round]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _time_line(t: dict) -> str:
    capacity = t["wall_s"] * t["slots"] or 1.0
    parts = [f"{label} {format_duration(t[key])} ({100 * t[key] / capacity:.0f} %)" for label, key in
             (("dense reference", "reference_s"), ("candidate training", "training_s"), ("LS", "ls_s"),
              ("trial starts/restores", "setup_s"), ("state saves", "save_s"),
              ("rounds waiting for their last candidates", "barrier_s"),
              ("other waiting (Tune, the driver)", "waiting_s"))]
    return f"{format_duration(t['wall_s'])} wall × {t['slots']} slot(s): " + " · ".join(parts)


def _spearman_line(rep: dict) -> str:
    parts = []
    for s in rep["spearman"]:
        rho = "–" if s["rho"] is None else f"{s['rho']:+.2f}"
        parts.append(f"round {s['round'] + 1}: ρ {rho} (n = {s['n']})")
    return " · ".join(parts) or "no round decided"


def render_markdown(rep: dict) -> str:
    """The report as Markdown (tables; fits a terminal too)."""
    s = rep["settings"]
    chosen = rep["chosen"]
    head = (f"chosen: {chosen['cid']} {config_label(chosen['config'])}" if chosen else "no finalist finished yet")
    lines = [f"# LSH search `{rep['name']}` — {rep['status']}", "",
             f"{s['model']}/{s['preset']} on {s['corpus']} (max_tokens {s['max_tokens']}), sparsity {s['sparsity']}, "
             f"{s['hpo']}/{s['metric']}, pool {s['pool_size']}, E = {s['rounds_every']}, {s['final_k']} finalists to "
             f"{s['max_epochs']} epochs; {head}", "", *_scores_table(rep), "", "## Rounds", "",
             f"Ranked by {s['signal']}; {learning_rule_text(s.get('untrained_ppl'))}.", "", *_rounds_table(rep), "",
             "## Survival of each hyperparameter value (kept/ranked)", *_survival_table(rep), "",
             f"**Time**: {_time_line(rep['time'])}", "",
             f"**Spearman ρ** of the round metric with final validation perplexity: {_spearman_line(rep)}"]
    return "\n".join(lines) + "\n"
