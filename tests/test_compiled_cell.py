"""The RHN cell through ``torch.compile`` (issue 19 item 1): the same function as the eager cells,
switched on by the trainer where it applies, and a model that still copies and pickles."""
from __future__ import annotations

import copy
import pickle
from dataclasses import replace

import pytest
import torch

from lsh_tune.data import load_corpus
from lsh_tune.errors import LSHUsageError
from lsh_tune.models import build_model, get_preset
from lsh_tune.train import Trainer, seed_everything
from lsh_tune.train.trainer import COMPILE_ENV, _use_compiled_cell


@pytest.mark.usefixtures("one_torch_thread")
def test_compiled_cell_gradients_are_the_composite_gradients_in_float64():
    """A whole RHN training forward/backward (dropout on: the state mask enters the compiled step) in
    float64, compiled cell against autograd of the composite: equal to 1e-12 (a few ulps of sums that
    Inductor may re-order; the fused backward is held to the same bound in test_models)."""
    spec, _ = get_preset("rhn", "tiny")
    spec = replace(spec, dropouts=(0.0, 0.0, 0.3, 0.0))
    results = {}
    for cell in ("autograd", "compiled"):
        torch.manual_seed(1)
        m = build_model(spec, 200).double().train()
        m.set_cell(cell)
        tokens = torch.randint(0, 200, (6, 3))
        out, _ = m(tokens, m.init_state(3))
        out.sum().backward()
        results[cell] = (out.detach(), {k: p.grad.clone() for k, p in m.named_parameters()})
    assert m._compiled_ran                                       # the compiled step ran, no fallback
    torch.testing.assert_close(results["compiled"][0], results["autograd"][0], rtol=0, atol=1e-12)
    for k, g in results["compiled"][1].items():
        torch.testing.assert_close(g, results["autograd"][1][k], rtol=0, atol=1e-12, msg=k)


@pytest.mark.usefixtures("one_torch_thread")
def test_trainer_with_the_compiled_cell_follows_the_eager_curve_on_real_ptb():
    """Two epochs of the tiny RHN on a real PTB slice with ``compile_cell=True`` (on CPU): the losses
    stay within 10× the spread between the two eager cells (fused and autograd backward: the same
    function, other rounding; measured here ≈ 7e-3 after two epochs at lr 15), and it learns."""
    c = load_corpus("ptb", max_tokens=12_000)
    c.valid, c.test = c.valid[:3_000], c.test[:3_000]
    spec, train = get_preset("rhn", "tiny")
    curves, trainers = {}, {}
    for cell in ("fused", "autograd", "compiled"):
        seed_everything(0)
        m = build_model(spec, len(c.vocab))
        if cell != "compiled":
            m.set_cell(cell)
        t = Trainer(m, c, replace(train, epochs=2), seed=0, device="cpu", compile_cell=cell == "compiled")
        curves[cell] = [v for e in t.fit() for v in (e["train_loss"], e["val_loss"])]
        trainers[cell] = t
    assert trainers["compiled"].compiled_cell and trainers["compiled"].model._compiled_ran
    assert not trainers["fused"].compiled_cell                   # auto on a CPU: off
    spread = max(abs(a - b) for a, b in zip(curves["fused"], curves["autograd"]))
    assert 0 < spread < 0.1, spread
    gap = max(abs(a - b) for a, b in zip(curves["compiled"], curves["fused"]))
    assert gap <= 10 * spread, (gap, spread)
    assert curves["compiled"][3] < curves["compiled"][1]        # validation loss fell


def test_who_gets_the_compiled_cell(monkeypatch):
    """Auto (``None``): on CUDA only, and not under ``LSH_COMPILE_CELL=0``; ``True`` on a model without a
    compiled cell is refused, naming the model; an unknown cell is refused, naming the choices."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # only the device type is read
    rhn_spec, _ = get_preset("rhn", "tiny")
    lstm_spec, _ = get_preset("stacked_lstm", "tiny")
    rhn = build_model(rhn_spec, 50)
    assert not _use_compiled_cell(rhn, None, cpu) and rhn.cell == "fused"
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert not _use_compiled_cell(rhn, None, cuda) and rhn.cell == "fused"
    monkeypatch.delenv(COMPILE_ENV)
    assert _use_compiled_cell(rhn, None, cuda) and rhn.cell == "compiled"
    lstm = build_model(lstm_spec, 50)
    assert not _use_compiled_cell(lstm, None, cuda)
    with pytest.raises(LSHUsageError, match="StackedLSTM has no compiled cell"):
        _use_compiled_cell(lstm, True, cpu)
    with pytest.raises(LSHUsageError, match="cell='jit' is not allowed; choose from fused, autograd, compiled"):
        rhn.set_cell("jit")


def test_a_compiled_cell_model_copies_and_pickles():
    """The compiled function is not part of the model's copies (it does not pickle); a copy keeps the
    ``compiled`` choice and compiles again on first use."""
    spec, _ = get_preset("rhn", "tiny")
    m = build_model(spec, 50)
    m.use_compiled_cell()
    m._compiled_highway = torch.compile(m._plain_highway, dynamic=False)  # as after a first use
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone.cell == "compiled" and clone._compiled_highway is None and not clone._compiled_ran
        for a, b in zip(clone.parameters(), m.parameters()):
            assert torch.equal(a, b)
    assert m._compiled_highway is not None                      # the original keeps its own
