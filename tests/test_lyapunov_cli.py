"""``lsh-tune ls``: preset and checkpoint sources, --json, --plot, usage errors."""
from __future__ import annotations

import json

import pytest
import torch

from lsh_tune.cli import OneLineParser
from lsh_tune.cli import ls as ls_cli
from lsh_tune.errors import LSHUsageError
from lsh_tune.models import build_model, get_preset


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(argv: list[str]) -> int:
    parser = OneLineParser(prog="lsh-tune")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    ls_cli.register(sub)
    args = parser.parse_args(["ls"] + argv)
    return args.func(args)


def test_preset_json_is_one_object(capsys):
    assert _run(["--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--top", "8", "--steps", "10",
                 "--warmup", "2", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    obj = json.loads(out)
    assert obj["n"] == 64 and len(obj["exponents"]) == 8 and obj["log_base"] == "e"
    assert obj["config"]["steps"] == 10 and obj["exponents"] == sorted(obj["exponents"], reverse=True)


def test_checkpoint_text_and_plot(tmp_path, capsys):
    spec = get_preset("stacked_lstm", "tiny")[0]
    torch.manual_seed(0)
    model = build_model(spec, 10000)
    mask = torch.ones_like(model.rnns[0].weight_hh_l0)
    mask[:, 3] = 0
    ckpt = tmp_path / "sparse.pt"
    torch.save({"model_spec": spec.to_dict(), "model": model.state_dict(), "corpus": "ptb", "vocab_size": 10000,
                "masks": {"rnns.0.weight_hh_l0": mask}}, ckpt)
    png = tmp_path / "ls.png"
    assert _run(["--checkpoint", str(ckpt), "-k", "2", "--steps", "5", "--warmup", "0", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "N=128" in out and "natural log" in out
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("argv,match", [
    (["--model", "rhn", "--corpus", "ptb"], "--preset"),
    (["--model", "rhn", "--preset", "tiny"], "--corpus"),
    (["--model", "rhn", "--preset", "huge", "--corpus", "ptb"], "preset"),
    (["--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--state", "c"], "state"),
    (["--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "-k", "0"], "k=0"),
    (["--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--top", "65"], "top=65"),
    (["--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--qr", "blocks"], "qr='blocks'"),
    (["--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--plot", "/nonexistent/dir/x.png"], "plot"),
])
def test_usage_errors(argv, match):
    with pytest.raises(LSHUsageError, match=match):
        _run(argv)


def test_missing_checkpoint_keys(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"model": {}}, bad)
    with pytest.raises(LSHUsageError, match="lacks keys"):
        _run(["--checkpoint", str(bad)])
