"""What the terminal shows during a search: the search itself, not Ray (Ray-free; ``rich`` renders it).

:class:`ConsoleView` listens to the search's events (:mod:`lsh_tune.search.views.events`): a progress
bar for the dense reference (epoch i/n, validation perplexity, time left), one block of lines
per closed round (pool, ranking head, removed and refilled candidates with their configs, best
so far, elapsed and ETA), a bar per finalist, then the result. On a terminal the bars update in
place; in a log or a pipe only the lines appear.

It writes to stderr, so stdout keeps the report (or ``--json``). Verbosity (``--verbose``): 0 —
no live view; 1 (default) — the live view and none of Ray's chatter; 2 — the live view plus
Tune's reporter and Ray's INFO logs; 3 — Tune's most detailed reporter (what Ray prints is set in
:mod:`lsh_tune.search.tune.ray_output`).
"""
from __future__ import annotations

import math
from typing import Any

from lsh_tune.search.signals import SIGNALS, learning_rule_text
from lsh_tune.search.views.progress import config_label

__all__ = ["ConsoleView", "format_duration"]

def format_duration(seconds: float | None) -> str:
    """``"2m05s"``, ``"45s"``, ``"1h02m"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _ppl(value: Any) -> str:
    return "?" if value is None else f"{float(value):.1f}"


def _value(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


class ConsoleView:
    """Renders a search's events on a terminal (use as a context manager, or :meth:`start`/:meth:`close`).

    Args:
        console: a ``rich.console.Console`` (default: stderr, so stdout keeps the report or the JSON;
            lines never wrapped by rich).
    """

    def __init__(self, console=None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console if console is not None else Console(stderr=True, soft_wrap=True, highlight=False)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self.console,
                                 transient=True)
        self._tasks: dict[str, Any] = {}
        self._unigram: float | None = None
        self._metric = "metric"
        self._started = False

    def start(self) -> "ConsoleView":
        if not self._started:
            self.progress.start()
            self._started = True
        return self

    def close(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False

    def __enter__(self) -> "ConsoleView":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def print(self, text: str) -> None:
        self.progress.console.print(text, markup=False)

    # ------------------------------------------------------------ events
    def __call__(self, event: dict) -> None:
        handler = getattr(self, f"_on_{event['kind']}", None)
        if handler is not None:
            handler(event)

    def _bar(self, key: str, description: str, total: int, completed: int, info: str) -> None:
        if key not in self._tasks:
            self._tasks[key] = self.progress.add_task(description, total=total, info=info)
        self.progress.update(self._tasks[key], completed=completed, total=total, info=info)

    def _drop_bar(self, key: str) -> None:
        if key in self._tasks:
            self.progress.remove_task(self._tasks.pop(key))

    def _versus_unigram(self, ppl: Any) -> str:
        if ppl is None or not self._unigram:
            return ""
        return f" ({float(ppl) / self._unigram:.2f} × unigram)"

    def _on_search_start(self, e: dict) -> None:
        self._unigram = (e.get("unigram") or {}).get("test")
        # events of a search started before signals had labels: the registered signal's label
        self._metric = e.get("signal_label") or getattr(SIGNALS.get(e["metric"]), "label", e["metric"])
        plan = " → ".join([str(n) for n, _, _ in e["plan"]] + [str(e["final_k"])])
        what = " ".join(str(e[k]) for k in ("model", "preset") if e.get(k))
        tokens = "/".join(f"{t:,}" for t in e.get("tokens") or ())
        self.print(f"LSH search {e.get('name', '')}: {what} on {e.get('corpus', '?')} ({tokens} tokens), sparsity "
                   f"{e.get('sparsity', '?')}, {e.get('hpo', '?')}/{e['metric']}, pool {e['pool']}, E = "
                   f"{e['rounds_every']}, plan {plan} finalists to {e['max_epochs']} epochs, {e['slots']} trial(s) "
                   f"at a time{' (resumed)' if e.get('resumed') else ''}")
        if e.get("signal"):
            self.print(f"ranked by {e['signal']}; {learning_rule_text(e.get('untrained_ppl'))}")
        if e.get("unigram"):
            self.print(f"add-one unigram perplexity of these tokens: valid {_ppl(e['unigram'].get('valid'))}, "
                       f"test {_ppl(e['unigram'].get('test'))}")

    def _on_reference_epoch(self, e: dict) -> None:
        self._bar("reference", "dense reference", e["epochs"], e["epoch"], f"val ppl {_ppl(e.get('val_ppl'))}")

    def _on_reference_done(self, e: dict) -> None:
        self._drop_bar("reference")
        self.print(f"dense reference{' (cached)' if e.get('cached') else ''}: val ppl {_ppl(e.get('val_ppl'))}, "
                   f"test ppl {_ppl(e.get('test_ppl'))}{self._versus_unigram(e.get('test_ppl'))}")

    def _on_epoch(self, e: dict) -> None:
        if e.get("phase") == "final":
            self._bar(e["cid"], f"finalist {e['cid']}", e["max_epochs"], e["epoch"], f"val ppl {_ppl(e.get('val_ppl'))}")

    def _on_round(self, e: dict) -> None:
        best = e.get("best") or {}
        head = (f" · best {best['cid']} ({self._metric} {_value(best['value'])}, val ppl "
                f"{_ppl(best.get('val_ppl'))})" if best else "")
        self.print(f"round {e['round'] + 1}/{e['rounds']}: pool {e['pool']}, removed {len(e['removed'])}, refilled "
                   f"{len(e['refilled'])}{head} · {format_duration(e.get('elapsed_s'))} elapsed, ETA "
                   f"{format_duration(e.get('eta_s'))}")
        kept = e["pool"] - len(e["removed"])
        ranking = [f"{cid} {_value(v)}" for cid, v in e["ranking"]]
        self.print("  ranking  " + " · ".join(ranking[:kept]) + (" | " + " · ".join(ranking[kept:]) if
                                                                 ranking[kept:] else ""))
        why = e.get("not_learning") or {}
        if why:
            self.print("  not learning (ranked last)  " + " · ".join(f"{cid}: {reason}" for cid, reason in
                                                                     why.items()))
        for what, items in (("removed", e["removed"]), (f"refilled ({e.get('generator')})", e["refilled"])):
            if items:
                self.print(f"  {what}  " + " · ".join(f"{i['cid']} {config_label(i['config'])}" for i in items))

    def _on_finalist_done(self, e: dict) -> None:
        self._drop_bar(e["cid"])
        self.print(f"finalist {e['cid']}: val ppl {_ppl(e.get('val_ppl'))}, test ppl {_ppl(e.get('test_ppl'))}"
                   f"{self._versus_unigram(e.get('test_ppl'))}, density {e.get('density') or 0:.3f}")

    def _on_trial_error(self, e: dict) -> None:
        self.print(f"trial {e['cid']} failed: {e.get('error')}")

    def _on_result(self, e: dict) -> None:
        best = e.get("best")
        if best is None:
            self.print(f"no finalist finished ({format_duration(e.get('elapsed_s'))})")
            return
        self.print(f"chosen {best['cid']} {config_label(best['config'])}: val ppl {_ppl(best.get('val_ppl'))}, test ppl "
                   f"{_ppl(best.get('test_ppl'))}{self._versus_unigram(best.get('test_ppl'))}, density "
                   f"{best.get('density') or 0:.3f} · search {format_duration(e.get('elapsed_s'))}")
