"""Building a training table: one real run per file, resumable after a kill, nothing finished retrained."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.table import Table, plan_configs, read_run, table_preset, train_run
from lsh_tune.table._format import REFERENCE_KEY, run_path
from lsh_tune.table._train import load_table_corpus, partial_path
from lsh_tune.table.tune_build import missing_runs, prepare_table, tune_storage_path

from helpers import kill_tree

ROOT = Path(__file__).resolve().parents[1]


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def tiny():
    settings = replace(table_preset("tiny"), ls_states=("h",), embeddings=("raw",), metrics=("l2",))
    return settings, load_table_corpus(settings)


def test_a_run_killed_mid_way_continues_from_its_partial_state_bit_identically(tmp_path, tiny):
    settings, corpus = tiny
    config = plan_configs(settings)[5]
    key = config.pop("key")
    whole = train_run(tmp_path / "a", settings, key, config, 0, corpus)

    def kill_after_epoch_1(rec):
        if rec["epoch"] == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train_run(tmp_path / "b", settings, key, config, 0, corpus, on_epoch=kill_after_epoch_1)
    assert partial_path(tmp_path / "b", key, 0).exists() and read_run(tmp_path / "b", key, 0) is None
    trained = []
    resumed = train_run(tmp_path / "b", settings, key, config, 0, corpus, on_epoch=lambda r: trained.append(r["epoch"]))
    assert trained == [2, 3]  # epoch 1 was not trained again
    assert [r["val_loss"] for r in resumed["epochs"]] == [r["val_loss"] for r in whole["epochs"]]
    assert resumed["final"] == whole["final"] and not partial_path(tmp_path / "b", key, 0).exists()
    assert len(resumed["epochs"]) == settings.epochs + 1 and set(resumed["epochs"][0]["ls"]) == {"h"}
    again = []
    train_run(tmp_path / "b", settings, key, config, 0, corpus, on_epoch=lambda r: again.append(r))
    assert again == []  # a finished run is never retrained


def test_an_unreadable_partial_state_restarts_the_run_cleanly(tmp_path, tiny):
    settings, corpus = tiny
    path = partial_path(tmp_path, REFERENCE_KEY, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a torch file")
    epochs = []
    run = train_run(tmp_path, settings, REFERENCE_KEY, None, 1, corpus, on_epoch=lambda r: epochs.append(r["epoch"]))
    assert epochs == [1, 2, 3] and run["final"]["density"] == 1.0


def test_a_table_keeps_its_settings_and_grows_by_new_configurations(tmp_path, tiny):
    settings, _ = tiny
    configs = plan_configs(settings)
    prepare_table(tmp_path, settings, configs[:2])
    kept, grown = prepare_table(tmp_path, None, configs[:3])
    assert kept == settings and [c["key"] for c in grown] == [c["key"] for c in configs[:3]]
    with pytest.raises(LSHUsageError, match="other settings"):
        prepare_table(tmp_path, replace(settings, epochs=5), configs)
    todo = missing_runs(tmp_path, settings, grown)
    assert len(todo) == 4 * len(settings.seeds)
    # references first, then every configuration at the first seed before any at the second
    assert [(r["key"], r["seed"]) for r in todo] == ([("reference", s) for s in settings.seeds]
                                                     + [(c["key"], s) for s in settings.seeds for c in grown])
    sample = plan_configs(settings, grid=False, sample=5, sample_seed=2)
    assert len(sample) == 5
    assert sample == plan_configs(settings, grid=False, sample=5, sample_seed=2)
    assert {c["key"] for c in sample}.isdisjoint(c["key"] for c in configs)
    with pytest.raises(LSHUsageError, match="exceeds"):
        plan_configs(settings, sample=1000)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lsh_tune", *args]


def test_table_build_killed_and_resumed_retrains_no_finished_run(tmp_path):
    pytest.importorskip("ray")
    table = tmp_path / "t"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = _cli("table", "build", str(table), "--preset", "tiny", "--first", "1", "--seeds", "0",
                "--num-cpus", "1", "--ray-storage", str(tmp_path / "ray"))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while not run_path(table, REFERENCE_KEY, 0).exists() and time.time() < deadline:
            time.sleep(0.2)
        assert run_path(table, REFERENCE_KEY, 0).exists(), "the first run never finished"
    finally:
        kill_tree(proc)  # the driver, its Ray and workers (its own session), until all are gone
    first = run_path(table, REFERENCE_KEY, 0)
    before = (first.stat().st_mtime_ns, first.read_bytes())
    done = subprocess.run(args + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["missing"] == 0 and summary["trained"] == 1 and summary["runs_total"] == 2
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    assert not Table(table).missing


def test_table_build_usage_errors_are_one_line(tmp_path):
    out = subprocess.run(_cli("table", "build", str(tmp_path / "none")), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--preset" in out.stderr
    assert not (tmp_path / "none").exists()


def test_tune_storage_of_a_table_build_keeps_uris_and_refuses_malformed_ones(tmp_path, monkeypatch):
    """``--ray-storage``: an object-store URI goes to Tune as given (it was once resolved as a local
    path, ``./s3:/bucket``), a directory or ``file://`` one is made absolute, and a malformed URI is
    refused in one line (exit 2) before the table directory is created."""
    monkeypatch.chdir(tmp_path)
    assert tune_storage_path("s3://bucket/tune?endpoint_override=http://127.0.0.1:9&scheme=http") == \
        "s3://bucket/tune?endpoint_override=http://127.0.0.1:9&scheme=http"
    assert tune_storage_path("gs://bucket/x") == "gs://bucket/x"
    assert tune_storage_path("ray") == str(tmp_path / "ray")
    assert tune_storage_path(f"file://{tmp_path}/r") == str(tmp_path / "r")
    assert Path(tune_storage_path(None)).is_dir()
    with pytest.raises(LSHUsageError, match="ray_storage='s3:/bucket' is not a URI"):
        tune_storage_path("s3:/bucket")
    out = subprocess.run(_cli("table", "build", str(tmp_path / "t"), "--preset", "tiny", "--ray-storage", "s3://"),
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "ray_storage='s3://' names no bucket" in out.stderr
    assert not (tmp_path / "t").exists()
    out = subprocess.run(_cli("table", "build", "s3://bucket/table", "--preset", "tiny"),
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "table='s3://bucket/table' is an object-store URI" in out.stderr, out.stderr
    assert not (tmp_path / "s3:").exists()


def test_a_table_restricted_to_some_of_its_seeds():
    from lsh_tune.table import Table

    tiny = Path(__file__).resolve().parents[1] / "tables" / "tiny"
    full, first = Table(tiny), Table(tiny, seeds=[0])
    assert first.settings.seeds == (0,) and set(first.runs) == {k for k in full.runs if k[1] == 0}
    key = first.keys[0]
    assert first.final(key) == full.run(key, 0)["final"]["test_ppl"]
    with pytest.raises(LSHUsageError, match=r"seeds=\[7\] must be some of the table's training seeds \[0, 1\]"):
        Table(tiny, seeds=[7])


def test_an_existing_table_grows_by_the_same_sample_a_new_one_gets(tmp_path, monkeypatch):
    import argparse

    from lsh_tune.cli import table as table_cli

    settings = table_preset("tiny")
    grid = plan_configs(settings)
    prepare_table(tmp_path, settings, grid[:6])  # a quick table: the first six grid variants
    args = argparse.Namespace(table=str(tmp_path), preset=None, seeds=None, epochs=None, no_grid=False,
                              grid_death_rate=0.8, sample=3, sample_seed=4, first=None)
    saved, sample = table_cli._plan(args)
    fresh = plan_configs(settings, sample=3, sample_seed=4)[len(grid):]
    assert saved is None and sample == fresh and len(sample) == 3
    assert all(c["death_rate"] != 0.8 for c in sample)
    _, grown = prepare_table(tmp_path, saved, sample)
    assert [c["key"] for c in grown] == [c["key"] for c in grid[:6] + fresh]  # the rest of the grid not added
    assert table_cli._plan(argparse.Namespace(**{**vars(args), "sample": 0})) == (None, None)
