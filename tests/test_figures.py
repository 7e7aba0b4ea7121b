"""The figures of a real tiny search are drawn from its data (the shared ``tiny_search`` run)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lsh_tune.search.views.figures import fig1, ranking_vs_final, round_space_figure
from lsh_tune.search.views.history import SearchHistory

pytestmark = pytest.mark.ray


def _by_gid(fig) -> dict:
    return {a.get_gid(): a for ax in fig.axes for a in ax.get_children() if a.get_gid()}


@pytest.fixture(scope="module")
def history(tiny_search):
    return SearchHistory.load(tiny_search[0])


def test_the_search_wrote_its_figures(tiny_search, history):
    figures = tiny_search[0] / "figures"
    names = sorted(p.name for p in figures.iterdir())
    assert names == ["fig1.png", "ls_space_round1.png", "ls_space_round2.png", "ranking_vs_final.png"]
    for p in figures.iterdir():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_fig1_curves_are_the_searchs_data(tiny_search, history):
    exp = tiny_search[0]
    results = {r["cid"]: r for r in json.loads((exp / "results.json").read_text())}
    best = json.loads((exp / "best.json").read_text())["best"]["cid"]
    removed = json.loads((exp / "lsh" / "state.json").read_text())["pool"]["rounds"][0]["removed"][0]
    fig = fig1(history)
    art = _by_gid(fig)
    ppl = art[f"ppl:{best}"]  # (C) the chosen candidate's validation perplexity, epoch by epoch
    assert list(ppl.get_xdata()) == list(range(1, 4))
    assert ppl.get_ydata()[-1] == pytest.approx(results[best]["val_ppl"])
    epochs = [e for e in (json.loads(line) for line in (exp / "events.jsonl").read_text().splitlines())
              if e["kind"] == "epoch" and e["cid"] == removed]
    assert list(art[f"ppl:{removed}"].get_ydata()) == pytest.approx([e["val_ppl"] for e in epochs])
    ref_ls = np.array(json.loads((exp / "lsh" / "reference_ls.json").read_text()))
    assert art["ls:0:reference"].get_ydata() == pytest.approx(ref_ls[0])  # (A) the spectra as saved
    spectra = json.loads((exp / "lsh" / "spectra" / f"{best}.json").read_text())
    assert art[f"ls:1:{best}"].get_ydata() == pytest.approx(np.array(spectra["1"]), nan_ok=True)
    dist = art[f"dist:{best}"]  # (B) one point per spectrum of the candidate
    assert list(dist.get_xdata()) == sorted(int(e) for e in spectra)
    assert np.all(np.asarray(dist.get_ydata()) >= 0)


def test_round_scatter_distances_are_the_rankings(tiny_search, history):
    state = json.loads((tiny_search[0] / "lsh" / "state.json").read_text())["pool"]
    for r, decided in enumerate(state["rounds"]):
        fig = round_space_figure(history, r)
        art = _by_gid(fig)
        star = np.array([art["point:reference"].get_xdata()[0], art["point:reference"].get_ydata()[0]])
        kept = [c for c, _ in decided["ranking"] if c not in decided["removed"]]
        for label, cids in (("kept", kept), ("removed", decided["removed"])):
            points = art[f"points:{label}"].get_offsets()
            assert len(points) == len(cids)
            measured = sorted(np.linalg.norm(points - star, axis=1))  # PCA + L2: distance in the plane
            assert measured == pytest.approx(sorted(v for c, v in decided["ranking"] if c in cids), rel=1e-6)
    

def test_ranking_vs_final_plots_rankings_against_final_perplexity(tiny_search, history):
    exp = tiny_search[0]
    results = {r["cid"]: r for r in json.loads((exp / "results.json").read_text())}
    last = json.loads((exp / "lsh" / "state.json").read_text())["pool"]["rounds"][-1]
    fig = ranking_vs_final(history)
    final = _by_gid(fig)["final:1"].get_offsets()
    expected = sorted((v, results[c]["val_ppl"]) for c, v in last["ranking"] if results[c]["status"] == "finished")
    got = sorted(map(tuple, final))
    assert [v for v, _ in got] == pytest.approx([v for v, _ in expected])
    assert [p for _, p in got] == pytest.approx([p for _, p in expected])
