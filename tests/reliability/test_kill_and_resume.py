"""Real searches, interrupted at every kind of instant, resumed, compared with an uninterrupted one.

One tiny LSH-TPE search (stacked LSTM ``tiny``, 2,000-token PTB slices, pool 5, E = 1, final_k 2,
``max_epochs`` 3, a 2-epoch dense reference trial) runs twice from the command line with the same
seed: once straight through ("clean"), once as a chain of drivers (``_faulty_driver.py``) that each
hit one fault at an exact instant and are then resumed with ``--resume``:

1. SIGKILL of the whole machine while the dense reference trains (after its epoch 1 of 2);
2. SIGKILL mid-round (the 3rd of round 0's 5 boundaries reaches the ledger);
3. SIGKILL while round 0 is being ranked and refilled (decided in memory, not yet saved);
4. a trial's worker SIGKILLed mid-epoch (epoch 2, validation under way) — Tune restarts the trial
   from its last state and the round completes — then the disk fills up when round 1 is saved:
   one clear error, exit 1, ``lsh/state.json`` still the previous version;
5. SIGKILL while the finalists train (the first finalist's final result arrives);
6. with Tune's own snapshot (``tuner.pkl``, ``experiment_state-*.json``) truncated, the last resume
   runs to the end (fresh trials from ``lsh/state.json`` and the candidates' states).

Asserted: each fault struck where it was aimed; the chain chose what the clean run chose (same
rounds, rankings, candidates, best, perplexities); every spectrum of the pool-wide LS fit equal to
1e-6 (the same seed gives the same search); no finished epoch — of a candidate or of the
reference — trained twice (their epoch logs).
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from helpers import kill_tree  # noqa: E402

pytestmark = pytest.mark.ray
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARGS = ["--model", "stacked_lstm", "--preset", "tiny", "--hpo", "tpe", "--metric", "ls", "--pool", "5",
        "--rounds-every", "1", "--final-k", "2", "--max-epochs", "3", "--reference-epochs", "2",
        "--max-tokens", "2000", "--gpus-per-trial", "0", "--cpus-per-trial", "1", "--seed", "0",
        "--address", "local", "--num-cpus", "2", "--verbose", "0", "--json"]


def _chain(marker: Path) -> list[dict]:
    """The faults of the interrupted runs, in order (the last run has none)."""
    return [{"reference_epoch": 1}, {"boundary": [0, 3]}, {"decide_round": 0},
            {"worker": {"epoch": 2, "marker": str(marker)}, "disk_full_rounds": 2}, {"final": True}, {}]


def _drive(store: Path, name: str, faults: dict, resume: bool) -> subprocess.CompletedProcess:
    """One driver process with ``faults``; everything it started is gone when this returns."""
    temp = Path("/tmp") / f"lshrel{os.getpid()}"
    env = dict(os.environ, LSH_FAULTS=json.dumps(faults), TUNE_GLOBAL_CHECKPOINT_S="1", RAY_DEDUP_LOGS="0",
               PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), str(HERE.parent)]), OMP_NUM_THREADS="1")
    argv = [sys.executable, str(HERE / "_faulty_driver.py"), *ARGS, "--storage-path", str(store), "--name", name,
            "--ray-temp-dir", str(temp), *(["--resume"] if resume else [])]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=str(store))
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        kill_tree(proc)  # anything of that session still alive (by its group id), until it is gone
    shutil.rmtree(temp, ignore_errors=True)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _state(exp: Path) -> dict:
    return json.loads((exp / "lsh" / "state.json").read_text())


def _reference_log(exp: Path) -> list[dict]:
    from lsh_tune.storage import Storage

    cache = Storage(exp.parent / "reference_cache")
    return [r for key in {p.split("/")[0] for p in cache.listdir(recursive=True)}
            for r in cache.read_records(f"{key}/epochs")]


def _damage_tune_snapshot(exp: Path) -> None:
    for path in [exp / "tuner.pkl", *exp.glob("experiment_state-*.json")]:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    store = tmp_path_factory.mktemp("killed")
    clean = _drive(store, "clean", {}, resume=False)
    assert clean.returncode == 0, clean.stderr[-3000:]
    shutil.rmtree(store / "reference_cache")  # the chain must train its own reference
    marker = store / "worker-killed.json"
    steps = []
    for i, faults in enumerate(_chain(marker)):
        if i == len(_chain(marker)) - 1:
            _damage_tune_snapshot(store / "chain")
        run = _drive(store, "chain", faults, resume=i > 0)
        snapshot = {"state": _state(store / "chain") if (store / "chain/lsh/state.json").exists() else None,
                    "reference_log": _reference_log(store / "chain"),
                    "cached": any(p.suffix == ".npz" for p in (store / "reference_cache").glob("*.npz"))}
        steps.append((faults, run, snapshot))
    return {"store": store, "clean": clean, "steps": steps, "marker": marker}


def test_each_fault_struck_where_it_was_aimed(searches):
    (_, r1, s1), (_, r2, s2), (_, r3, s3), (_, r4, s4), (_, r5, s5), (_, r6, _) = searches["steps"]
    for run in (r1, r2, r3, r5):
        assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert [e["epoch"] for e in s1["reference_log"]] == [1] and not s1["cached"]  # mid-reference
    assert s2["state"]["pool"]["rounds"] == [] and s2["cached"]  # mid-round (the reference was done)
    assert s3["state"]["pool"]["rounds"] == []  # ranked and refilled in memory only: nothing saved
    assert len(s4["state"]["pool"]["rounds"]) == 1  # round 1 could not be saved: the previous version
    assert s5["state"]["pool"]["phase"] == "final"
    assert not any(c["final"] for c in s5["state"]["pool"]["candidates"])
    assert r6.returncode == 0, r6.stderr[-3000:]


def test_a_full_disk_mid_search_is_one_clear_error_and_resumes(searches):
    _, run, snapshot = searches["steps"][3]
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 1, run.stderr[-3000:]
    assert last.startswith("lsh-tune: error: cannot write ") and "lsh/state.json: No space left on device" in last
    assert "previous version is intact" in last and not any(x.startswith("{") for x in run.stdout.splitlines())
    assert not list((searches["store"] / "chain" / "lsh").glob(".*"))  # no temp file a resume could trust


def test_a_worker_killed_mid_epoch_restarts_from_its_state_and_the_round_completes(searches):
    from lsh_tune.seeds import derive_seed

    killed = json.loads(searches["marker"].read_text())  # written by the worker just before it died
    state = _state(searches["store"] / "chain")["pool"]
    cid = next(c["cid"] for c in state["candidates"] if derive_seed(0, c["cid"]) == killed["seed"])
    mine = [e for e in _epoch_log(searches["store"] / "chain") if e["cid"] == cid]
    assert killed["epoch"] == 2 and sorted(e["epoch"] for e in mine)[:2] == [1, 2]  # epoch 1 not trained again
    assert all(e["pid"] != killed["pid"] for e in mine if e["epoch"] == 2)  # finished by the restarted trial
    assert cid in dict(state["rounds"][1]["ranking"])  # its round completed with it
    assert not any(c["status"] == "failed" for c in state["candidates"])


def _epoch_log(exp: Path) -> list[dict]:
    from lsh_tune.search.candidate import read_epoch_log

    return read_epoch_log(exp)


def test_no_finished_epoch_is_trained_twice(searches):
    store = searches["store"]
    for exp in (store / "clean", store / "chain"):
        counts = collections.Counter((e["cid"], e["epoch"]) for e in _epoch_log(exp))
        assert counts and max(counts.values()) == 1, exp.name
    assert sorted(collections.Counter((e["cid"], e["epoch"]) for e in _epoch_log(store / "chain"))) == \
        sorted(collections.Counter((e["cid"], e["epoch"]) for e in _epoch_log(store / "clean")))
    assert sorted(e["epoch"] for e in _reference_log(store / "chain")) == [1, 2]


def test_the_resumed_search_chose_what_the_uninterrupted_one_chose(searches):
    store = searches["store"]
    a, b = _state(store / "chain")["pool"], _state(store / "clean")["pool"]
    assert [(r["removed"], r["generated"], [c for c, _ in r["ranking"]]) for r in a["rounds"]] == \
        [(r["removed"], r["generated"], [c for c, _ in r["ranking"]]) for r in b["rounds"]]
    for ra, rb in zip(a["rounds"], b["rounds"]):
        assert [v for _, v in ra["ranking"]] == pytest.approx([v for _, v in rb["ranking"]], rel=1e-6)
    assert [(c["cid"], c["config"], c["status"], c["epochs"]) for c in a["candidates"]] == \
        [(c["cid"], c["config"], c["status"], c["epochs"]) for c in b["candidates"]]
    chain = json.loads(searches["steps"][-1][1].stdout.strip().splitlines()[-1])
    clean = json.loads(searches["clean"].stdout.strip().splitlines()[-1])
    assert chain["best"]["cid"] == clean["best"]["cid"]
    assert chain["best"]["test_ppl"] == pytest.approx(clean["best"]["test_ppl"], rel=1e-6)


def test_the_same_seed_gives_the_same_spectra(searches):
    store = searches["store"]
    names = sorted(p.name for p in (store / "clean" / "lsh" / "spectra").glob("*.json"))
    assert names == sorted(p.name for p in (store / "chain" / "lsh" / "spectra").glob("*.json")) and names
    for name in names:
        a = json.loads((store / "chain" / "lsh" / "spectra" / name).read_text())
        b = json.loads((store / "clean" / "lsh" / "spectra" / name).read_text())
        assert a.keys() == b.keys()
        for epoch in a:
            assert a[epoch] == pytest.approx(b[epoch], rel=1e-6, abs=1e-6), (name, epoch)
