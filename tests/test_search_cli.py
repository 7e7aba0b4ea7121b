"""``lsh-tune search`` argument handling (no Ray started: every case fails before ray.init)."""
import os
import socket
import subprocess
import sys

import pytest

from lsh_tune.cli.search import main
from lsh_tune.errors import LSHAddressError, LSHUsageError

from helpers import REPO, closed_port

#: Runs ``lsh-tune ARGS`` in this interpreter and says on stdout whether Ray was started.
_CLI_THEN_RAY_STATE = ("import sys\nfrom lsh_tune.cli import main\nrc = main(sys.argv[1:])\n"
                       "ray = sys.modules.get('ray')\n"
                       "print('ray started' if ray is not None and ray.is_initialized() else 'no ray')\n"
                       "sys.exit(rc)\n")


@pytest.mark.parametrize("args,message", [
    (["--hpo", "smac"], "hpo='smac' is not allowed; choose one of: grid, random, tpe, atpe, bohb, hyperband"),
    (["--metric", "acc"], "metric='acc' is not allowed"),
    (["--pool", "8", "--rounds-every", "1", "--max-epochs", "3"], "use max_epochs >= 4"),
    (["--hpo", "grid", "--pool", "30", "--max-epochs", "20"], "pool=30 exceeds the grid's 24 variants"),
    (["--sparsity", "1.2"], "sparsity=1.2 is out of range"),
    (["--gpus-per-trial", "0", "--cpus-per-trial", "0"], "a trial needs some resource"),
    (["--address", "auto", "--num-cpus", "2"], "only apply to a local Ray instance"),
    (["--ls-fit", "global"], "ls_fit='global' is not allowed; choose one of: pool, candidate"),
    (["--ls-qr", "blocks"], "ls_qr='blocks' is not allowed; choose one of: layered, joint"),
    (["--ls-embedding", "umap"], "ls_embedding='umap' is not allowed; choose one of: pca, raw, tsne"),
    (["--address", "headnode"], "address='headnode' is not a Ray address; allowed: auto, local, HOST:PORT or "
                                "ray://HOST[:PORT]"),
    (["--address", "headnode:70000"], "address='headnode:70000': port 70000 is out of range"),
])
def test_bad_values_are_one_line_errors_with_exit_2(args, message, capsys, tmp_path):
    assert main([*args, "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_no_cluster_answers_is_one_line_and_exit_2_without_ray(tmp_path, scheme):
    """Nothing listens on the port (bound, then closed): refused at once (a refused connect; a silent host
    would take the documented 10 s), where ``ray.init`` would retry for minutes. The subprocess's own
    limit (120 s) only bounds a hang."""
    address = f"{scheme}127.0.0.1:{closed_port()}"
    r = subprocess.run([sys.executable, "-c", _CLI_THEN_RAY_STATE, "search", "--address", address,
                        "--storage-path", str(tmp_path / "runs"), "--gpus-per-trial", "0", "--max-tokens", "2000"],
                       capture_output=True, text=True, timeout=120, cwd=str(REPO),
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and r.stdout == "no ray\n", (r.stdout, r.stderr[-2000:])
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lsh-tune: error: address={address!r}: no Ray cluster answers"), \
        r.stderr[-2000:]
    assert "TCP connect timeout 10 s, set by LSH_RAY_CONNECT_TIMEOUT_S" in lines[0]
    assert not (tmp_path / "runs" / "lsh").exists()  # nothing of the experiment was written


def test_the_address_check_and_its_timeout(monkeypatch):
    from lsh_tune.search.run.ray_address import check_ray_address

    port = closed_port()
    monkeypatch.setenv("LSH_RAY_CONNECT_TIMEOUT_S", "0.5")
    with pytest.raises(LSHAddressError, match=r"timeout 0.5 s") as e:
        check_ray_address(f"127.0.0.1:{port}")
    assert isinstance(e.value, LSHUsageError)  # exit 2 on the command line
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # no address: what ray.init would use
    with pytest.raises(LSHAddressError, match=f"RAY_ADDRESS='127.0.0.1:{port}'"):
        check_ray_address(None)
    check_ray_address("auto")  # left to Ray
    monkeypatch.setenv("LSH_RAY_CONNECT_TIMEOUT_S", "soon")
    with pytest.raises(LSHUsageError, match="LSH_RAY_CONNECT_TIMEOUT_S='soon' is not allowed; give seconds > 0"):
        check_ray_address(f"127.0.0.1:{port}")
    monkeypatch.delenv("LSH_RAY_CONNECT_TIMEOUT_S")
    with socket.socket() as listening:  # something answers: no error
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_ray_address(f"127.0.0.1:{listening.getsockname()[1]}")
        check_ray_address(f"ray://127.0.0.1:{listening.getsockname()[1]}")


def test_the_python_api_checks_the_address_before_starting_ray(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    import lsh_tune

    def refuse(*args, **kwargs):
        raise AssertionError("ray.init was called with an address where nothing answers")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"127.0.0.1:{closed_port()}"
    tuner = lsh_tune.LSHTuner(address=address, gpus_per_trial=0, max_tokens=2000, storage_path=str(tmp_path))
    with pytest.raises(LSHAddressError, match=f"address='{address}': no Ray cluster answers"):
        tuner.fit()


def test_resume_without_a_search_fails_before_starting_ray(tmp_path, capsys):
    assert main(["--storage-path", str(tmp_path), "--name", "nothing", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_experiment_scripts_pass_overrides_through():
    r = subprocess.run([sys.executable, str(REPO / "experiments" / "ptb_stacked_lstm.py"), "--hpo", "nope"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                       timeout=300)
    assert r.returncode == 2 and "hpo='nope'" in r.stderr


def test_saved_config_round_trips_and_an_older_one_keeps_the_joint_order():
    from lsh_tune.search.config import SearchConfig

    cfg = SearchConfig(ls_qr="layered", ls_top=16)
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "ls_qr"}  # written before ls_qr existed
    assert SearchConfig.from_dict(old).ls_config().qr == "joint"
    assert SearchConfig().ls_config().qr == "layered"


def test_a_non_default_space_gets_its_own_grid_size_and_is_saved():
    from lsh_tune.search.config import SearchConfig
    from lsh_tune.space import DEFAULT_SPACE

    bigger = DEFAULT_SPACE.with_choices(growth=("random", "momentum", "gradient"))
    assert len(bigger.grid()) == 72
    cfg = SearchConfig(hpo="grid", space=bigger, max_epochs=20)
    assert cfg.pool_size == 72 and cfg.pool_config().pool_size == 72
    assert SearchConfig(hpo="grid", pool=30, space=bigger, max_epochs=20).pool_size == 30
    with pytest.raises(LSHUsageError, match="pool=30 exceeds the grid's 24 variants"):
        SearchConfig(hpo="grid", pool=30, max_epochs=20)
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "space"}  # written before the space was saved
    assert SearchConfig.from_dict(old).space == DEFAULT_SPACE


def test_default_max_epochs_is_the_preset_raised_to_what_the_schedule_needs():
    from lsh_tune.models import get_preset
    from lsh_tune.search.config import SearchConfig

    preset = get_preset("stacked_lstm", "tiny")[1].epochs
    # pool 8, E = 1: rounds 8 -> 6 -> 4 -> 2, so the oldest finalist has 3 epochs and needs 4
    assert SearchConfig(hpo="random", pool=8, rounds_every=1).resolved_max_epochs() == max(preset, 4)
    # pool 24 grid, E = 3: 24 -> 12 -> 6 -> 3 -> 2 is four rounds, 12 epochs, so 13
    assert SearchConfig(hpo="grid", rounds_every=3).resolved_max_epochs() == max(preset, 13)
    assert SearchConfig(hpo="grid", rounds_every=3, max_rounds=1).resolved_max_epochs() == max(preset, 4)


def test_no_address_resolves_as_ray_init_does():
    """No ``--address``: ``RAY_ADDRESS``, else a cluster running on this machine, else a local instance;
    ``local`` always a new local instance (``lsh_tune.search.run.ray_address.resolve_address``)."""
    from lsh_tune.search.run.ray_address import resolve_address

    def nothing_runs():
        return None

    def fails():
        raise AssertionError("looked for a running cluster")

    assert resolve_address("local", fails, {"RAY_ADDRESS": "10.0.0.1:6379"})[0] == "local"
    assert resolve_address("10.0.0.2:6379", fails, {"RAY_ADDRESS": "10.0.0.1:6379"})[0] == "10.0.0.2:6379"
    address, how = resolve_address(None, fails, {"RAY_ADDRESS": "10.0.0.1:6379"})
    assert address == "10.0.0.1:6379" and "running Ray cluster at '10.0.0.1:6379' (RAY_ADDRESS)" in how
    address, how = resolve_address(None, lambda: "10.0.0.3:6379", {})
    assert address == "10.0.0.3:6379" and "connecting to the running Ray cluster at '10.0.0.3:6379'" in how
    address, how = resolve_address(None, nothing_runs, {})
    assert address == "local" and how.startswith("starting a local Ray instance")


def test_the_running_cluster_is_found_the_way_ray_init_finds_it(tmp_path, monkeypatch):
    """Ray's address file (``$RAY_TMPDIR/ray/ray_current_cluster``, written by ``ray start``), read with
    Ray's private lookup: breaks if Ray moves it. A stale file (nothing answers there) counts as none."""
    pytest.importorskip("ray")
    from lsh_tune.search.tune.tuner import running_cluster_address

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert running_cluster_address() is None                      # no file: no cluster
    (tmp_path / "ray").mkdir()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        (tmp_path / "ray" / "ray_current_cluster").write_text(address + "\n")
        assert running_cluster_address() == address
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{closed_port()}\n")
    assert running_cluster_address() is None                      # stale: a local instance
