"""``lsh-tune report`` on a real tiny search, finished and interrupted (the shared ``tiny_search`` run)."""
from __future__ import annotations

import json
import math
import shutil

import pytest
from scipy.stats import spearmanr

from lsh_tune.search.views.history import SearchHistory
from lsh_tune.search.views.report import build_report, render_markdown

pytestmark = pytest.mark.ray


def _results(exp) -> dict[str, dict]:
    return {r["cid"]: r for r in json.loads((exp / "results.json").read_text())}


def test_report_of_a_finished_search_matches_its_files(tiny_search):
    exp = tiny_search[0]
    rep = build_report(SearchHistory.load(exp))
    best = json.loads((exp / "best.json").read_text())
    results = _results(exp)
    assert rep["status"] == "finished"
    chosen = rep["chosen"]
    assert chosen["cid"] == best["best"]["cid"] and chosen["val_ppl"] == pytest.approx(best["best"]["val_ppl"])
    assert chosen["test_ppl"] == pytest.approx(best["best"]["test_ppl"])
    assert chosen["test_vs_unigram"] == pytest.approx(chosen["test_ppl"] / rep["unigram"]["test"])
    assert rep["reference"]["test_ppl"] == pytest.approx(best["reference"]["test_ppl"])
    finalists = {f["cid"] for f in rep["finalists"]}
    assert finalists == {cid for cid, r in results.items() if r["status"] == "finished"} and len(finalists) == 2
    state = json.loads((exp / "lsh" / "state.json").read_text())["pool"]
    for row, decided in zip(rep["rounds"], state["rounds"], strict=True):
        assert row["ranking"] == [list(x) for x in decided["ranking"]] and row["removed"] == decided["removed"]
        assert row["generator"] == ("tpe" if decided["generated"] else None)
    for name, per_round in rep["survival"].items():
        for r, counts in enumerate(per_round):
            ranked = [cid for cid, _ in state["rounds"][r]["ranking"]]
            kept = [cid for cid in ranked if cid not in state["rounds"][r]["removed"]]
            for value, (k, n) in counts.items():
                same = [c for c in ranked if str(results[c][name]) in (value, f"{value}") or
                        (isinstance(results[c][name], float) and f"{results[c][name]:g}" == value)]
                assert n == len(same) and k == len([c for c in same if c in kept])
    last = rep["spearman"][-1]
    ranked = [(v, results[c].get("val_ppl")) for c, v in state["rounds"][-1]["ranking"]
              if results[c].get("val_ppl") is not None and results[c]["status"] == "finished"]
    assert last["n"] == len(ranked) == 2
    assert last["rho"] == pytest.approx(spearmanr(*zip(*ranked)).statistic)
    t = rep["time"]
    assert t["slots"] == 2 and t["wall_s"] > 0 and min(t["training_s"], t["ls_s"], t["reference_s"]) > 0
    parts = ("training_s", "ls_s", "reference_s", "setup_s", "save_s", "barrier_s", "waiting_s")
    assert sum(t[k] for k in parts) == pytest.approx(t["wall_s"] * t["slots"], rel=1e-6)  # they add up
    assert min(t["setup_s"], t["save_s"]) > 0      # every trial's start and every epoch's state save is timed
    # a round waits for its last candidates: with 2 slots and more candidates than slots, some slot idles then
    assert t["barrier_s"] > 0
    assert t["setup_s"] < t["training_s"]
    text = render_markdown(rep)
    assert f"**{chosen['cid']} (chosen)**" in text and "## Rounds" in text and "Spearman" in text


def test_report_cli_json_markdown_and_bad_input(tiny_search, tmp_path, capsys):
    from lsh_tune.cli import main

    exp = tiny_search[0]
    md = tmp_path / "report.md"
    assert main(["report", str(exp), "--json", "--md", str(md)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["chosen"]["cid"] == json.loads((exp / "best.json").read_text())["best"]["cid"]
    assert md.read_text().startswith("# LSH search `tiny` — finished")
    assert main(["report", str(exp)]) == 0 and capsys.readouterr().out == md.read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no LSH search" in err
    (tmp_path / "file").write_text("")
    assert main(["report", str(exp), "--md", str(tmp_path / "file" / "report.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--md" in err and "cannot write it" in err


def test_report_of_an_interrupted_search(tiny_search, tmp_path):
    """The finalists had not finished: no best.json, finalists without final metrics."""
    exp = tmp_path / "interrupted"
    shutil.copytree(tiny_search[0], exp)
    (exp / "best.json").unlink()
    state_file = exp / "lsh" / "state.json"
    state = json.loads(state_file.read_text())
    for c in state["pool"]["candidates"]:
        if c["status"] == "finished":
            c["status"], c["final"] = "final", None
    state["pool"]["phase"] = "final"
    state_file.write_text(json.dumps(state))
    rep = build_report(SearchHistory.load(exp))
    assert rep["status"] == "interrupted after 2 round(s), phase final" and rep["chosen"] is None
    assert len(rep["rounds"]) == 2 and all(f["val_ppl"] is None for f in rep["finalists"])
    assert all(s["n"] == 0 and s["rho"] is None for s in rep["spearman"])
    assert math.isfinite(rep["reference"]["val_ppl"])  # from the events, without best.json
    assert "no finalist finished yet" in render_markdown(rep)


def test_rank_correlation_of_tied_ranks_is_undefined_not_a_warning():
    """A round whose ranked finalists tie (the demo's round 2: two finalists with the same rank average)
    gives ρ = None, with no scipy ConstantInputWarning in the user's terminal; varied values give scipy's ρ."""
    import types
    import warnings

    from lsh_tune.search.views.report import spearman_by_round

    def history(values, finals):
        entries = [types.SimpleNamespace(cid=f"c{i}", value=v) for i, v in enumerate(values)]
        return types.SimpleNamespace(pool=types.SimpleNamespace(rounds=[{}]), ranked=lambda r: entries,
                                     final=lambda cid: finals[int(cid[1:])])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tied = spearman_by_round(history([1.5, 1.5, 3.0], [400.0, 600.0, None]))
        varied = spearman_by_round(history([1.0, 2.0, 3.0], [400.0, 600.0, 500.0]))
    assert tied == [{"round": 0, "n": 2, "rho": None, "p": None}]
    assert varied[0]["n"] == 3 and varied[0]["rho"] == pytest.approx(spearmanr([1, 2, 3], [400, 600, 500]).statistic)
