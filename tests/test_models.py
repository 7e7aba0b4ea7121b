"""The three models: paper parameter counts, step() vs forward(), normalised outputs."""
from __future__ import annotations

import pytest
import torch

from lsh_tune.errors import LSHUsageError
from lsh_tune.models import MODELS, build_model, count_parameters, get_preset

PAPER = {("stacked_lstm", 10_000): 66.0e6, ("rhn", 10_000): 23.5e6, ("awd_lstm_mos", 33_278): 35.0e6}


@pytest.mark.parametrize("model,vocab", list(PAPER))
def test_paper_parameter_counts(model, vocab):
    spec, _ = get_preset(model, "paper")
    n = count_parameters(build_model(spec, vocab))["total"]
    assert abs(n - PAPER[(model, vocab)]) / PAPER[(model, vocab)] < 0.005, n


@pytest.mark.parametrize("model", MODELS)
def test_step_matches_forward_in_eval(model):
    torch.manual_seed(0)
    spec, _ = get_preset(model, "tiny")
    m = build_model(spec, 500).eval()
    tokens = torch.randint(0, 500, (7, 3))
    state = m.init_state(3)
    log_probs, final = m(tokens, state)
    s = state
    for t in range(7):
        s = m.step(s, m.embed(tokens[t:t + 1])[0])
    assert torch.allclose(m.h_vector(s), m.h_vector(final), atol=1e-6)
    assert m.h_vector(s).shape == (3, m.state_size)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(7, 3), atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_dropout_only_in_train_mode(model):
    spec, _ = get_preset(model, "small")
    m = build_model(spec, 300)
    tokens = torch.randint(0, 300, (5, 2))
    m.eval()
    a, _ = m(tokens, m.init_state(2))
    b, _ = m(tokens, m.init_state(2))
    assert torch.equal(a, b)
    m.train()
    torch.manual_seed(0)
    c, _ = m(tokens, m.init_state(2))
    assert not torch.allclose(a, c)


def test_tied_weights_are_one_tensor():
    spec, _ = get_preset("rhn", "tiny")
    m = build_model(spec, 100)
    assert m.decoder.weight is m.encoder.weight
    assert "decoder.weight" not in count_parameters(m)["per_tensor"]


@pytest.mark.parametrize("bad", [("lstm", "tiny"), ("rhn", "huge")])
def test_unknown_model_or_preset(bad):
    with pytest.raises(LSHUsageError, match="choose one of"):
        get_preset(*bad)


def test_rhn_fused_highway_backward_is_the_composite_gradient():
    """The hand-written backward of the highway update (issue 19) against autograd of the composite
    form: gradcheck in float64 (its finite-difference tolerances), then a whole RHN training
    forward/backward with and without it in float64 — equal to 1e-12 (a few ulps of re-ordered sums)."""
    from lsh_tune.models.rhn import _FusedHighwayUpdate

    torch.manual_seed(0)
    pre = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    s = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_FusedHighwayUpdate.apply, (pre, s))
    spec, _ = get_preset("rhn", "tiny")
    grads = {}
    for fused in (True, False):
        torch.manual_seed(1)
        m = build_model(spec, 200).double().train()
        m.set_cell("fused" if fused else "autograd")
        tokens = torch.randint(0, 200, (6, 3))
        out, _ = m(tokens, m.init_state(3))
        out.sum().backward()
        grads[fused] = (out.detach(), {k: p.grad.clone() for k, p in m.named_parameters()})
    assert torch.equal(grads[True][0], grads[False][0])          # the same forward kernels
    for k, g in grads[True][1].items():
        torch.testing.assert_close(g, grads[False][1][k], rtol=0, atol=1e-12, msg=k)
