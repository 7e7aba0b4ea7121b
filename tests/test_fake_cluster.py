"""``cluster/local.yaml`` really starts: a fake multi-node cluster that autoscales GPU workers from 0.

The shipped YAML (``fake_multinode`` provider) is started the way its header says —
``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=cluster/local.yaml`` — on free ports and a
private temp dir (the provider is told the GCS port through ``provider.gcs_address``; nothing else
of the YAML changes), once for this module. On it: a tiny LSH search through ``lsh-tune search
--address`` (its trials ask for a GPU the head does not have, so the autoscaler must launch worker
nodes, and every trained epoch must come from one of them), and an experiment script submitted
the documented way, as a Ray job (``ray job submit --working-dir ... -- python
experiments/ptb_rhn.py``). Teardown kills exactly the processes of this cluster (by their temp
dir), never ``ray stop`` (which would stop every Ray on the machine).
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


@pytest.fixture(scope="module")
def fake_cluster():
    """``(GCS address, dashboard URL, the YAML as started, temp dir)`` of one fake cluster for this module."""
    from ray._private.services import get_node_ip_address

    temp = Path(f"/tmp/lshfk{os.getpid()}")       # short: Ray's socket paths must fit 107 chars
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    port, dashboard, agent, ip = free_port(), free_port(), free_port(), get_node_ip_address()
    config = yaml.safe_load((REPO / "cluster" / "local.yaml").read_text())
    config["provider"]["gcs_address"] = f"{ip}:{port}"
    (temp / "local.yaml").write_text(yaml.safe_dump(config))
    # PATH: a Ray job's entrypoint (`python ...`) runs with the cluster's environment: this venv's python.
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--num-cpus=1",
                    f"--autoscaling-config={temp / 'local.yaml'}", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent}"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    try:
        yield f"{ip}:{port}", f"http://127.0.0.1:{dashboard}", config, temp
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
    address, _, config, _ = fake_cluster
    assert [n["gpu"] for n in _nodes(address) if n["alive"]] == [0]   # the head alone, no GPU: workers from 0
    cmd = [sys.executable, "-m", "lsh_tune", "search", "--address", address, "--model", "stacked_lstm",
           "--preset", "tiny", "--max-tokens", "2000", "--sparsity", "0.67", "--hpo", "random", "--metric", "loss",
           "--pool", "4", "--rounds-every", "1", "--final-k", "2", "--max-epochs", "2", "--gpus-per-trial", "1",
           "--cpus-per-trial", "1", "--verbose", "0", "--storage-path", str(tmp_path), "--name", "fake", "--json"]
    t0 = time.time()
    run = subprocess.run(cmd, env=_client_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["best"] is not None and summary["phase"] == "done"

    workers = {n["id"] for n in _nodes(address) if n["gpu"] > 0}
    max_workers = config["available_node_types"]["ray.worker.gpu"]["max_workers"]
    assert 1 <= len(workers) <= max_workers                  # launched by the autoscaler, within bounds
    log = read_epoch_log(tmp_path / "fake")
    assert log and {r["node_id"] for r in log} <= workers     # every epoch on an autoscaled GPU worker
    print(f"fake cluster search: {time.time() - t0:.0f} s, {len(log)} epochs on {len(workers)} worker(s)")


def test_experiment_script_runs_as_a_ray_job(fake_cluster):
    """``ray job submit`` — the documented way to run a script on a cluster (README) — against the fake
    cluster's job server: the working directory is uploaded and its ``lsh_tune`` is the one imported;
    ``experiments/ptb_rhn.py --preset tiny`` runs to the end as a job, finds the cluster through the
    ``RAY_ADDRESS`` the job sets (no ``--address``), and trains every epoch on an autoscaled GPU worker.

    The search job's working directory is given as ``local://`` (Ray 2.60's in-place working dir: the
    same cwd and PYTHONPATH, without an upload) because the fake nodes share one session directory,
    where each node's runtime-env agent would unpack an uploaded package again over the directory the
    others run in; on a real cluster every node has its own disk.
    """
    address, dashboard, config, temp = fake_cluster
    submit = [RAY, "job", "submit", "--address", dashboard]
    shipped = subprocess.run(
        [*submit, "--working-dir", str(REPO), "--", "python", "-c",
         "import lsh_tune, sys; print('lsh_tune from', lsh_tune.__file__); sys.argv = ['ptb_rhn.py', '--help']; "
         "import runpy; runpy.run_path('experiments/ptb_rhn.py', run_name='__main__')"],
        env=_client_env(), capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert shipped.returncode == 0, shipped.stdout[-3000:] + shipped.stderr[-3000:]
    shipped_from = next(line for line in shipped.stdout.splitlines() if line.startswith("lsh_tune from"))
    assert "working_dir_files" in shipped_from and str(REPO) not in shipped_from  # the uploaded copy
    assert "usage: ptb_rhn.py" in shipped.stdout and "(default: 0.53)" in shipped.stdout

    store = temp / "job-runs"                 # under the cluster's temp dir: the teardown finds the job's driver
    t0 = time.time()
    job = subprocess.run(
        [*submit, "--working-dir", f"local://{REPO}", "--", "python", "experiments/ptb_rhn.py", "--preset", "tiny",
         "--gpus-per-trial", "1", "--storage-path", str(store), "--verbose", "0", "--json"],
        env=_client_env(), capture_output=True, text=True, timeout=600, cwd=str(REPO))
    out = job.stdout + job.stderr
    assert job.returncode == 0, out[-4000:]
    assert f"connecting to the running Ray cluster at '{address}'" in out   # RAY_ADDRESS, set by the job
    summary = json.loads(next(line for line in reversed(job.stdout.splitlines()) if line.startswith("{")))
    assert summary["best"] is not None and summary["phase"] == "done"
    exp = store / "ptb_rhn"
    assert json.loads((exp / "best.json").read_text())["best"] is not None
    saved = json.loads((exp / "lsh" / "search.json").read_text())
    assert saved["model"] == "rhn" and saved["preset"] == "tiny" and saved["pool"] == 3
    workers = {n["id"] for n in _nodes(address) if n["gpu"] > 0}
    log = read_epoch_log(exp)
    assert log and {r["node_id"] for r in log} <= workers      # trained on autoscaled GPU workers
    print(f"ray job on the fake cluster: {time.time() - t0:.0f} s, {len(log)} epochs")


def test_experiment_script_without_address_joins_the_running_cluster(fake_cluster, tmp_path):
    """``python experiments/ptb_rhn.py --preset tiny`` on a node of a running cluster, without ``--address``
    and without ``RAY_ADDRESS``: it joins that cluster as ``ray.init()`` does (Ray's address file, which
    ``ray start`` writes in its temp dir; ``RAY_TMPDIR`` points the lookup at this cluster's, the way
    ``/tmp/ray`` is found on a real node), says so, and every epoch trains on an autoscaled GPU worker."""
    address, _, _, temp = fake_cluster
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    (tmpdir / "ray").symlink_to(temp)          # $RAY_TMPDIR/ray/ray_current_cluster: the fake cluster's
    env = {k: v for k, v in _client_env().items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(tmpdir)
    store = tmp_path / "runs"
    run = subprocess.run([sys.executable, "experiments/ptb_rhn.py", "--preset", "tiny", "--gpus-per-trial", "1",
                          "--storage-path", str(store), "--verbose", "0", "--json"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=str(REPO))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert f"connecting to the running Ray cluster at '{address}' (started on this machine" in out
    workers = {n["id"] for n in _nodes(address) if n["gpu"] > 0}
    log = read_epoch_log(store / "ptb_rhn")
    assert log and {r["node_id"] for r in log} <= workers      # on the running cluster's GPU workers
