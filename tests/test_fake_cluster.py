"""``cluster/local.yaml`` really starts: a fake multi-node cluster that autoscales GPU workers from 0.

The shipped YAML (``fake_multinode`` provider) is started the way its header says —
``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=cluster/local.yaml`` — on a free port
and a private temp dir (the provider is told that port through ``provider.gcs_address``; nothing
else of the YAML changes). A tiny LSH search then runs on it through ``lsh-tune search
--address``: its trials ask for a GPU the head does not have, so the autoscaler must launch worker
nodes, and every trained epoch must come from one of them. Teardown kills exactly the processes
of this cluster (by their temp dir), never ``ray stop`` (which would stop every Ray on the machine).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("ray")

from lsh_tune.search.candidate import read_epoch_log  # noqa: E402

from helpers import free_port, kill_processes_using  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def fake_cluster():
    from ray._private.services import get_node_ip_address

    temp = Path(f"/tmp/lshfk{os.getpid()}")       # short: Ray's socket paths must fit 107 chars
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    port, ip = free_port(), get_node_ip_address()
    config = yaml.safe_load((REPO / "cluster" / "local.yaml").read_text())
    config["provider"]["gcs_address"] = f"{ip}:{port}"
    (temp / "local.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--num-cpus=1",
                    f"--autoscaling-config={temp / 'local.yaml'}", "--include-dashboard=false"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    try:
        yield f"{ip}:{port}", config
    finally:
        kill_processes_using(str(temp))  # this cluster's processes only (by its temp dir), until gone
        shutil.rmtree(temp, ignore_errors=True)


def _client_env() -> dict:
    # `ray start` clusters use token auth in Ray 2.60; its token is in ~/.ray/auth_token.
    return {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}


def _nodes(address: str) -> list[dict]:
    code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps([{'id': n['NodeID'], 'gpu': n['Resources'].get('GPU', 0), 'alive': n['Alive']} "
            "for n in ray.nodes()]))" % address)
    out = subprocess.run([sys.executable, "-c", code], env=_client_env(), capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_local_yaml_autoscales_gpu_workers_and_runs_a_search(fake_cluster, tmp_path):
    address, config = fake_cluster
    assert [n["gpu"] for n in _nodes(address)] == [0]          # the head alone, no GPU: workers from 0
    cmd = [sys.executable, "-m", "lsh_tune", "search", "--address", address, "--model", "stacked_lstm",
           "--preset", "tiny", "--max-tokens", "2000", "--sparsity", "0.67", "--hpo", "random", "--metric", "loss",
           "--pool", "4", "--rounds-every", "1", "--final-k", "2", "--max-epochs", "2", "--gpus-per-trial", "1",
           "--cpus-per-trial", "1", "--verbose", "0", "--storage-path", str(tmp_path), "--name", "fake", "--json"]
    t0 = time.time()
    run = subprocess.run(cmd, env=_client_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["best"] is not None and summary["phase"] == "done"

    nodes = _nodes(address)
    workers = {n["id"] for n in nodes if n["gpu"] > 0}
    max_workers = config["available_node_types"]["ray.worker.gpu"]["max_workers"]
    assert 1 <= len(workers) <= max_workers                  # launched by the autoscaler, within bounds
    log = read_epoch_log(tmp_path / "fake")
    assert log and {r["node_id"] for r in log} <= workers     # every epoch on an autoscaled GPU worker
    print(f"fake cluster search: {time.time() - t0:.0f} s, {len(log)} epochs on {len(workers)} worker(s)")
