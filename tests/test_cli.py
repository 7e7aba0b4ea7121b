"""The command line: JSON output, one-line errors with exit code 2, train-dense end to end."""
from __future__ import annotations

import json

import pytest

from helpers import run_cli


def test_data_info_json():
    r = run_cli("data-info", "--corpus", "ptb", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["tokens"]["train"] == 929_589 and info["vocab_size"] == 10_000


def test_model_info_json():
    r = run_cli("model-info", "--model", "stacked_lstm", "--preset", "paper", "--json")
    info = json.loads(r.stdout)
    assert abs(info["parameters"] - 66.0e6) / 66.0e6 < 0.005
    assert info["hidden_sizes"] == [1500, 1500] and info["layers"] == 2
    assert sum(info["per_tensor"].values()) == info["parameters"]


@pytest.mark.parametrize("args,needle", [
    (["model-info", "--model", "gru"], "'gru'"),
    (["model-info", "--model", "rhn", "--preset", "huge"], "'huge'"),
    (["data-info", "--corpus", "nocorpus"], "'nocorpus'"),
    (["train-dense", "--model", "rhn", "--epochs", "-1", "--out", "x"], "'-1'"),
    (["train-dense", "--model", "rhn", "--lr", "-3", "--out", "x"], "-3"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsh-tune: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_unreadable_data_is_one_line_exit_2(tmp_path):
    for s in ("train", "valid", "test"):
        (tmp_path / f"{s}.txt.xz").write_bytes(b"garbage")
    r = run_cli("data-info", "--corpus", str(tmp_path))
    assert r.returncode == 2 and "cannot read corpus file" in r.stderr and len(r.stderr.splitlines()) == 1


def test_train_dense_writes_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    base = ["train-dense", "--model", "stacked_lstm", "--preset", "tiny", "--max-tokens", "3000",
            "--batch-size", "5", "--device", "cpu", "--out", str(out), "--json"]
    r = run_cli(*base, "--epochs", "1")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["epochs"] == 1 and res["test_ppl"] > 1 and (out / "checkpoint.pt").is_file()
    again = run_cli(*base, "--epochs", "1")                         # refuses to overwrite
    assert again.returncode == 2 and "--resume" in again.stderr
    r2 = run_cli(*base, "--epochs", "2", "--resume")
    assert r2.returncode == 0, r2.stderr
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]       # epoch 1 not trained again
