"""``lsh-tune search`` argument handling (no Ray started: every case fails before ray.init)."""
import subprocess
import sys
from pathlib import Path

import pytest

from lsh_tune.cli.search import main
from lsh_tune.errors import LSHUsageError

REPO = Path(__file__).resolve().parents[1]


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
])
def test_bad_values_are_one_line_errors_with_exit_2(args, message, capsys, tmp_path):
    assert main([*args, "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


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
