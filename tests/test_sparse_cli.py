"""``lsh-tune train-sparse`` end to end on a real PTB slice, and its errors."""
from __future__ import annotations

import json

import pytest

from helpers import run_cli

BASE = ["train-sparse", "--model", "stacked_lstm", "--preset", "tiny", "--max-tokens", "1500", "--device", "cpu"]


def test_train_sparse_json_reports_ppl_and_densities(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the CPU LSTM is ~10x slower with 2 threads here
    out = tmp_path / "run"
    r = run_cli(*BASE, "--sparsity", "0.67", "--sparse-init", "ER", "--death", "SET", "--growth", "random",
                "--redistribution", "nonzeros", "--death-rate", "0.7", "--epochs", "2", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)  # exactly one JSON object
    assert res["epochs"] == 2 and res["val_ppl"] > 1 and res["test_ppl"] > 1
    assert res["active"] == res["target_active"] and res["density"] == pytest.approx(0.33, abs=1e-6)
    assert set(res["per_tensor"]) == set(res["masked"]) and "decoder.weight" in res["masked"]
    assert res["prune_steps"] == 1 and res["config"]["death"] == "SET"
    assert (out / "checkpoint.pt").is_file() and (out / "result.json").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]


@pytest.mark.parametrize("flag,value,needle", [
    ("--death", "random", "death='random' is not allowed; choose one of: magnitude, SET, threshold, global_magnitude"),
    ("--growth", "SET", "choose one of: random, momentum, gradient"),
    ("--redistribution", "x", "choose one of: magnitude, nonzeros, momentum, none"),
    ("--sparse-init", "erk", "choose one of: uniform, ER"),
    ("--sparsity", "1.0", "sparsity=1.0 is out of range; allowed: (0.0, 1.0)"),
    ("--death-rate", "0", "death_rate=0.0 is out of range; allowed: (0.0, 1.0)"),
    ("--masked", "bias", "choose one of: embedding, input, recurrent, output, other"),
])
def test_bad_values_are_one_line_exit_2(tmp_path, capsys, flag, value, needle):
    from lsh_tune.cli import main

    args = {"--sparsity": "0.5"}
    args[flag] = value
    flat = [x for kv in args.items() for x in kv]
    assert main([*BASE, *flat, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()  # nothing written before validation
