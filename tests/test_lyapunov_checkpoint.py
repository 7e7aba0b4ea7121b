"""Checkpoint loading for ``lsh-tune ls`` and the first validation batch."""
from __future__ import annotations

import pytest
import torch

from lsh_tune.data import batchify
from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import load_checkpoint_model, validation_tokens
from lsh_tune.models import build_model, get_preset


def _save(path, **over):
    spec = get_preset("rhn", "tiny")[0]
    torch.manual_seed(0)
    model = build_model(spec, 100)
    d = {"model_spec": spec.to_dict(), "model": model.state_dict(), "corpus": "ptb", "vocab_size": 100}
    d.update(over)
    torch.save(d, path)
    return model


def test_masks_are_applied(tmp_path):
    mask = torch.ones(128, 64)
    mask[:, :10] = 0
    ref = _save(tmp_path / "c.pt", masks={"highway.0.weight": mask, "not.a.param": mask})
    model, ckpt = load_checkpoint_model(tmp_path / "c.pt")
    w = model.highway[0].weight
    assert not model.training and ckpt["corpus"] == "ptb"
    assert w[:, :10].abs().max() == 0 and torch.equal(w[:, 10:], ref.highway[0].weight[:, 10:])


def test_bad_checkpoints(tmp_path):
    _save(tmp_path / "v.pt", vocab_size=50)  # state dict of a 100-word model
    with pytest.raises(LSHUsageError, match="does not match"):
        load_checkpoint_model(tmp_path / "v.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(LSHUsageError, match="cannot read"):
        load_checkpoint_model(tmp_path / "junk.pt")


def test_validation_tokens_are_the_first_batch():
    stream = torch.arange(1000)
    tok = validation_tokens(stream, 4, 45)
    assert tok.shape == (45, 4) and torch.equal(tok, batchify(stream, 4)[:45])
    assert tok[0].tolist() == [0, 250, 500, 750]
    with pytest.raises(LSHUsageError, match="tokens"):
        validation_tokens(stream, 30, 45)
