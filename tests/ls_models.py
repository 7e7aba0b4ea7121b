"""Models and training helpers shared by the Lyapunov-spectrum tests (not a test module).

Linear RNNs whose exponents are known analytically, and a tiny stacked LSTM trained briefly on a
real PTB slice (vocabulary cut to ``VOCAB``) and pruned, for the engine's agreement tests.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from lsh_tune.data import batchify
from lsh_tune.models import RNNLanguageModel, build_model, get_preset


class LinearRNN(RNNLanguageModel):
    """h_t = A h_{t-1} + B x_t: the Jacobian is A at every step (user model: only ``step``)."""

    def __init__(self, a: torch.Tensor, emb: int = 3) -> None:
        super().__init__()
        n = a.shape[0]
        self.encoder = nn.Embedding(20, emb)
        self.a = nn.Parameter(a.clone())
        self.b = nn.Parameter(torch.randn(n, emb, dtype=a.dtype))
        self.hidden_sizes = (n,)
        self.to(a.dtype)

    def init_state(self, batch_size):
        return ((self._zeros(batch_size, self.hidden_sizes[0]),),)

    def embed(self, tokens):
        return self.encoder(tokens)

    def step(self, state, x):
        return ((state[0][0] @ self.a.T + x @ self.b.T,),)

def _orthogonal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))
    return q

def _tokens(rows: int, k: int = 2) -> torch.Tensor:
    return torch.randint(20, (rows, k), generator=torch.Generator().manual_seed(0))

class LinearStack(RNNLanguageModel):
    """Two linear layers: h1_t = A h1_{t-1} + B x_t, h2_t = D h2_{t-1} + C h1_t (+ E h2_{t-1} into layer 1 if
    ``feedback``, which breaks the block lower-triangular structure). Exponents: log|eig A| ∪ log|eig D|."""

    def __init__(self, a: torch.Tensor, d: torch.Tensor, feedback: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.encoder = nn.Embedding(20, 3).double()
        self.a, self.d = nn.Parameter(a.clone()), nn.Parameter(d.clone())
        self.b = nn.Parameter(torch.randn(a.shape[0], 3, dtype=a.dtype, generator=g))
        self.c = nn.Parameter(torch.randn(d.shape[0], a.shape[0], dtype=a.dtype, generator=g))
        self.e = nn.Parameter(torch.randn(a.shape[0], d.shape[0], dtype=a.dtype, generator=g) * float(feedback))
        self.hidden_sizes = (a.shape[0], d.shape[0])

    def init_state(self, batch_size):
        return tuple((self._zeros(batch_size, n),) for n in self.hidden_sizes)

    def embed(self, tokens):
        return self.encoder(tokens)

    def step(self, state, x):
        h1 = state[0][0] @ self.a.T + x @ self.b.T + state[1][0] @ self.e.T
        return ((h1,), (state[1][0] @ self.d.T + h1 @ self.c.T,))

VOCAB = 2000  # PTB ids >= VOCAB - 1 (the rarer words: ids follow first appearance) share one id

def _train_tiny(corpus, steps: int = 100, seed: int = 0):
    """Plain SGD (lr 20, clip 0.25) on a real PTB slice, vocabulary cut to ``VOCAB``."""
    torch.manual_seed(seed)
    return _sgd(build_model(get_preset("stacked_lstm", "tiny")[0], VOCAB), corpus, steps)

def _sgd(model, corpus, steps):
    data = batchify(corpus.train.clamp(max=VOCAB - 1), 20)
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    state = model.init_state(20)
    for i in range(steps):
        j = (i * 35) % (data.size(0) - 36)
        x, y = data[j:j + 35], data[j + 1:j + 36]
        state = model.detach_state(state) if j else model.init_state(20)
        logp, state = model(x, state)
        loss = nn.functional.nll_loss(logp.view(-1, logp.size(-1)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
    return model.eval()

def _prune(model, fraction: float, *, by_magnitude: bool, seed: int):
    pruned = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lstm in pruned.rnns:
            for w in (lstm.weight_hh_l0, lstm.weight_ih_l0):
                score = w.abs() if by_magnitude else torch.rand(w.shape, generator=g)
                w[score <= score.flatten().kthvalue(int(fraction * w.numel())).values] = 0
    return pruned


def normal_matrix_with_known_exponents() -> tuple[torch.Tensor, np.ndarray]:
    """A = U diag(blocks) Uᵀ (float64, 7×7), normal: real eigenvalues and a 2×2 rotation-scaling
    block (a complex pair). Returns A and its exponents log|eig|, unsorted."""
    mags = [1.6, 1.3, 1.1, 0.9, 0.7, 0.5]
    blocks = [torch.tensor([[mags[0]]]), torch.tensor([[-mags[1]]]),
              mags[2] * torch.tensor([[np.cos(0.7), -np.sin(0.7)], [np.sin(0.7), np.cos(0.7)]]),
              torch.tensor([[mags[3]]]), torch.tensor([[-mags[4]]]), torch.tensor([[mags[5]]])]
    d = torch.block_diag(*blocks).double()
    u = _orthogonal(d.shape[0], 1)
    a = u @ d @ u.T
    return a, np.log(np.abs(np.linalg.eigvals(a.numpy())))
