"""``make demo``'s search (experiments/demo.py, the one source of its settings) learns something: its dense
reference and its chosen candidate end clearly below the add-one unigram perplexity of the same tokens,
and the terminal shows the search in fewer than 60 lines."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from helpers import REPO
from lsh_tune.data import load_corpus, unigram_perplexity
from lsh_tune.search.config import SearchConfig
from lsh_tune.search.views.history import SearchHistory
from lsh_tune.search.views.report import build_report

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_demo_ends_well_below_the_unigram_baseline(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, str(REPO / "experiments" / "demo.py"), "--storage-path", str(tmp_path)],
                         capture_output=True, text=True, timeout=1800, cwd=str(REPO), env=env)
    wall = time.perf_counter() - t0
    assert run.returncode == 0, run.stderr[-4000:]
    lines = (run.stdout + run.stderr).splitlines()
    print(f"demo: {wall:.0f} s, {len(lines)} lines of output")  # its time is the README's claim, not a test
    assert len(lines) < 60, "\n".join(lines)
    exp = tmp_path / "demo"
    cfg = SearchConfig.load(exp)
    unigram = unigram_perplexity(load_corpus(cfg.corpus, cfg.data_dir, max_tokens=cfg.max_tokens), "test")
    rep = build_report(SearchHistory.load(exp))
    assert rep["unigram"]["test"] == pytest.approx(unigram) and f"test {unigram:.1f}" in run.stderr
    reference, chosen = rep["reference"]["test_ppl"], rep["chosen"]["test_ppl"]
    print(f"unigram {unigram:.1f}, dense reference {reference:.1f} ({reference / unigram:.2f}x), chosen "
          f"{rep['chosen']['cid']} {chosen:.1f} ({chosen / unigram:.2f}x)")
    assert reference < 0.7 * unigram and chosen < 0.7 * unigram
    assert chosen == pytest.approx(json.loads((exp / "best.json").read_text())["best"]["test_ppl"])
    assert "# LSH search `demo` — finished" in run.stdout and "tensorboard --logdir" in run.stdout
