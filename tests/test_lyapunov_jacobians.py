"""Analytic Jacobians (paper Appendix C) against autograd, float64, random states."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import jacobian, make_stepper, state_size, state_vector, supports_analytic
from lsh_tune.models import RNNLanguageModel, build_model, get_preset

VOCAB = 50


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name: str) -> RNNLanguageModel:
    torch.manual_seed(0)
    spec, _ = get_preset(name, "tiny")
    return build_model(spec, VOCAB).double().eval()


def _random_state(model, batch: int, gen: torch.Generator):
    return tuple(tuple(torch.randn(batch, t.shape[-1], dtype=torch.float64, generator=gen) * 0.7
                       for t in layer) for layer in model.init_state(1))


def _case(name: str, batch: int, seed: int):
    """(model, generator, a random state, a random input (batch, embedding)) of the tiny ``name`` in float64."""
    model = _model(name)
    gen = torch.Generator().manual_seed(seed)
    state = _random_state(model, batch, gen)
    return model, gen, state, torch.randn(batch, model.encoder.embedding_dim, dtype=torch.float64, generator=gen)


MODELS_AND_CONVENTIONS = pytest.mark.parametrize("name,convention", [(m, c) for m in ("stacked_lstm", "rhn",
                                                                                   "awd_lstm_mos")
                                                                    for c in ("h", "hc")])


@MODELS_AND_CONVENTIONS
def test_analytic_equals_autograd(name, convention):
    model, _, state, x = _case(name, 3, seed=1)
    ja, new_a = jacobian(model, state, x, convention=convention, method="analytic")
    jb, new_b = jacobian(model, state, x, convention=convention, method="autograd")
    n = state_size(model, convention)
    assert ja.shape == jb.shape == (3, n, n)
    assert torch.allclose(ja, jb, rtol=0, atol=1e-8)
    assert torch.allclose(state_vector(new_a, "hc"), state_vector(new_b, "hc"), rtol=0, atol=1e-12)
    # the new state is the model's own step
    ref = model.step(state, x)
    assert torch.allclose(state_vector(new_a, "hc"), state_vector(ref, "hc"), rtol=0, atol=1e-12)


@MODELS_AND_CONVENTIONS
def test_matmul_equals_dense_product(name, convention):
    model, gen, state, x = _case(name, 2, seed=2)
    jac, _ = make_stepper(model, convention=convention, dtype=torch.float64)(state, x)
    for m in (3, 20):  # gate-wise product and formed blocks
        q = torch.randn(2, jac.n, m, dtype=torch.float64, generator=gen)
        assert torch.allclose(jac.matmul(q), jac.dense() @ q, rtol=0, atol=1e-12)


def test_stack_jacobian_is_block_lower_triangular():
    model = _model("awd_lstm_mos")  # layers of 64, 64, 32
    state = _random_state(model, 1, torch.Generator().manual_seed(3))
    j, _ = jacobian(model, state, torch.randn(1, 32, dtype=torch.float64))
    assert j[0, :64, 64:].abs().max() == 0 and j[0, 64:128, 128:].abs().max() == 0
    assert j[0, 64:128, :64].abs().max() > 0


def test_state_sizes():
    assert state_size(_model("stacked_lstm"), "h") == 128
    assert state_size(_model("stacked_lstm"), "hc") == 256
    assert state_size(_model("awd_lstm_mos"), "hc") == 2 * (64 + 64 + 32)
    assert state_size(_model("rhn"), "h") == state_size(_model("rhn"), "hc") == 64


class _StepOnly(RNNLanguageModel):
    """A user model defining only ``step``: h_t = tanh(W h_{t-1} + x)."""

    def __init__(self, n: int = 6) -> None:
        super().__init__()
        self.encoder = nn.Embedding(10, n)
        self.w = nn.Linear(n, n)
        self.hidden_sizes = (n,)

    def init_state(self, batch_size):
        return ((self._zeros(batch_size, self.hidden_sizes[0]),),)

    def embed(self, tokens):
        return self.encoder(tokens)

    def step(self, state, x):
        return ((torch.tanh(self.w(state[0][0]) + x),),)


def test_user_model_falls_back_to_autograd():
    model = _StepOnly().double()
    assert not supports_analytic(model)
    h = torch.randn(2, 6, dtype=torch.float64)
    x = torch.randn(2, 6, dtype=torch.float64)
    j, _ = jacobian(model, ((h,),), x)
    expected = (1 - torch.tanh(model.w(h) + x) ** 2)[:, :, None] * model.w.weight
    assert torch.allclose(j, expected, atol=1e-12)


def test_bad_convention_raises():
    with pytest.raises(LSHUsageError, match="state"):
        state_size(_model("rhn"), "c")
