"""A real LSH search on a multi-node Ray cluster (``ray.cluster_utils.Cluster``) that loses a node.

One head with no CPU (like ``cluster/gpu.yaml``: the driver's node runs no trial) and two worker
nodes with one declared GPU each (this machine has none: trials train on CPU, but Ray schedules
them by GPU). Trials land on both workers; when every active candidate has finished its first
epoch, one worker node is removed. Its trials' workers die mid-round, Tune restarts them
(``FailureConfig``) on the surviving node from their newest state, and the search finishes with
every epoch of every candidate trained exactly once (the epoch log), outputs complete.
"""
from __future__ import annotations

import collections
import json
import threading
import time

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from lsh_tune.search import SearchLedger, plan_rounds  # noqa: E402
from lsh_tune.search.candidate import read_epoch_log  # noqa: E402
from lsh_tune.search.config import SearchConfig  # noqa: E402
from lsh_tune.search.tune.tuner import run_search  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _remove_a_node_mid_round(c: Cluster, workers, exp, pool: int, done: threading.Event, removed: dict) -> None:
    """Once every initial candidate has logged epoch 1 and both workers trained some, remove the
    worker that trained the last of them (its trials are mid-way through round 2 or paused)."""
    while not done.is_set():
        log = read_epoch_log(exp)
        first = [r for r in log if r["epoch"] == 1]
        if len({r["cid"] for r in first}) >= pool and len({r["node_id"] for r in log}) >= 2:
            victim_id = first[-1]["node_id"]
            victim = next(w for w in workers if w.node_id == victim_id)
            removed["node_id"] = victim_id
            removed["epochs_before"] = len(log)
            c.remove_node(victim, allow_graceful=False)
            removed["at"] = time.time()      # wall clock, as the epoch log's ``start``
            return
        time.sleep(0.2)


def test_search_survives_losing_a_worker_node(cluster, tmp_path):
    c, workers = cluster
    ray.init(address=c.address, log_to_driver=False)
    cfg = SearchConfig(model="stacked_lstm", preset="tiny", corpus="ptb", sparsity=0.67, hpo="tpe", metric="ls",
                       pool=4, rounds_every=1, final_k=2, max_epochs=3, gpus_per_trial=1.0, cpus_per_trial=1.0,
                       seed=0, max_tokens=2000, verbose=0, reference_epochs=2, address=c.address,
                       storage_path=str(tmp_path), name="multinode")
    exp = cfg.experiment_dir
    done, removed = threading.Event(), {}
    killer = threading.Thread(target=_remove_a_node_mid_round, args=(c, workers, exp, cfg.pool, done, removed),
                              daemon=True)
    killer.start()
    try:
        summary = run_search(cfg)
    finally:
        done.set()
        killer.join(10)

    assert removed, "the search ended before a worker node could be removed"
    log = read_epoch_log(exp)
    nodes = collections.Counter(r["node_id"] for r in log)
    assert len(nodes) == 2 and removed["node_id"] in nodes
    assert c.head_node.node_id not in nodes                 # the CPU-less head ran no trial
    assert len(log) > removed["epochs_before"]              # training went on after the loss
    # What Ray guarantees: a removed node's worker processes end once they see their raylet gone; they
    # look every raylet_death_check_interval_milliseconds (1 s by default, Ray's RayConfig). Until then a
    # trial there may go on: a driver call in flight at the removal let one start its next epoch 1.4 s
    # after it (seen once under the full suite on 2 cores). Exactly-once still holds (checked below: the
    # state is written before the epoch's record, and the restarted trial resumes from the newest state).
    # So epochs there start no later than that interval after the removal, with 10x headroom for a
    # loaded machine.
    after = [r for r in log[removed["epochs_before"]:]]
    grace_s = 10 * 1.0
    assert all(r["start"] < removed["at"] + grace_s for r in after if r["node_id"] == removed["node_id"]), \
        (removed, after)
    assert any(r["node_id"] != removed["node_id"] for r in after)       # the survivor took over

    # Every epoch of every candidate exactly once, as many as the pool schedule says.
    per_cid = collections.defaultdict(list)
    for r in log:
        per_cid[r["cid"]].append(r["epoch"])
    ledger = SearchLedger.load(exp)
    rows = {r["cid"]: r for r in ledger.pool.table()}
    assert set(per_cid) == set(rows)
    for cid, epochs in per_cid.items():
        assert sorted(epochs) == list(range(1, len(epochs) + 1)), (cid, epochs)
        if rows[cid]["status"] == "removed":                 # trained up to its last round boundary
            assert len(epochs) == rows[cid]["epochs_per_round"][-1], (cid, epochs)
    finals = [cid for cid, r in rows.items() if r["status"] == "finished"]
    assert len(finals) == cfg.final_k and all(len(per_cid[cid]) == cfg.max_epochs for cid in finals)
    assert len(ledger.pool.rounds) == len(plan_rounds(cfg.pool_config()))
    assert all(r["status"] != "failed" for r in rows.values())

    # Outputs complete on the (shared) storage path.
    best = json.loads((exp / "best.json").read_text())
    assert best["best"]["cid"] in finals and summary["best"]["cid"] == best["best"]["cid"]
    assert (exp / "best_model.pt").is_file() and (exp / "results.json").is_file()
