"""Stacked LSTM language models: plain (Zaremba-style) and AWD-LSTM with mixture of softmaxes."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F
from torch.func import functional_call

from lsh_tune.models.base import RNNLanguageModel, State, embedding_dropout, locked_dropout

__all__ = ["StackedLSTM", "AWDLSTMMoS", "lstm_cell_step"]


def lstm_cell_step(lstm: nn.LSTM, h: torch.Tensor, c: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a single-layer ``nn.LSTM`` (gate order i, f, g, o): (B, H) states, (B, I) input."""
    gates = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


class _LSTMStack(RNNLanguageModel):
    """Embedding + a list of single-layer ``nn.LSTM`` modules (``self.rnns``)."""

    def _build_stack(self, emb: int, hidden: tuple[int, ...]) -> None:
        sizes = (emb,) + tuple(hidden)
        self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1]) for i in range(len(hidden)))
        self.hidden_sizes = tuple(int(h) for h in hidden)

    def init_state(self, batch_size: int) -> State:
        return tuple((self._zeros(batch_size, h), self._zeros(batch_size, h)) for h in self.hidden_sizes)

    def step(self, state: State, x: torch.Tensor) -> State:
        out = []
        for lstm, (h, c) in zip(self.rnns, state):
            h, c = lstm_cell_step(lstm, h, c, x)
            out.append((h, c))
            x = h
        return tuple(out)

    def _run_layer(self, i: int, x: torch.Tensor, hc: tuple[torch.Tensor, torch.Tensor]):
        lstm = self.rnns[i]
        h0 = (hc[0].unsqueeze(0).contiguous(), hc[1].unsqueeze(0).contiguous())
        y, (h, c) = lstm(x, h0)
        return y, (h.squeeze(0), c.squeeze(0))


class StackedLSTM(_LSTMStack):
    """Stacked LSTM LM (paper Table A1: emb 1500, 2×1500, untied → 66.0M on PTB).

    Dropouts ``(dropoute, dropouti, dropouth, dropouto)``: word-level row dropout, dropout on the
    embedding output, dropout on every LSTM layer's output (the vertical connections, Zaremba
    style), and an extra dropout before the decoder. Plain (non-locked) dropout.
    """

    def __init__(self, vocab_size: int, emb: int, hidden: tuple[int, ...], *, tied: bool = False,
                 dropouts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)) -> None:
        super().__init__()
        if tied and hidden[-1] != emb:
            raise ValueError(f"tied weights need last hidden {hidden[-1]} == emb {emb}")
        self.vocab_size = vocab_size
        self.dropoute, self.dropouti, self.dropouth, self.dropouto = dropouts
        self.encoder = nn.Embedding(vocab_size, emb)
        self._build_stack(emb, hidden)
        self.decoder = nn.Linear(hidden[-1], vocab_size)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tied:
            self.decoder.weight = self.encoder.weight

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = embedding_dropout(self.encoder, tokens, self.dropoute, self.training)
        return F.dropout(x, self.dropouti, self.training)

    def forward(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Log-probabilities (T, B, V) and the new state."""
        x = self.embed(tokens)
        new = []
        for i in range(len(self.rnns)):
            x, hc = self._run_layer(i, x, state[i])
            x = F.dropout(x, self.dropouth, self.training)
            new.append(hc)
        x = F.dropout(x, self.dropouto, self.training)
        return F.log_softmax(self.decoder(x), dim=-1), tuple(new)


class AWDLSTMMoS(_LSTMStack):
    """AWD-LSTM with a mixture of softmaxes (Yang et al. 2018).

    Weight-drop (DropConnect, ``wdrop``) on every hidden-to-hidden matrix in training, locked
    dropout between layers, embedding row dropout, tied encoder/decoder (the decoder's width is
    the embedding size; the last LSTM layer feeds ``n_experts`` latent projections of that width).
    Dropouts ``(dropoute, dropouti, dropouth, dropout)`` plus ``dropoutl`` on the latent.
    """

    def __init__(self, vocab_size: int, emb: int, hidden: tuple[int, ...], *, n_experts: int = 15,
                 dropouts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
                 dropoutl: float = 0.0, wdrop: float = 0.0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dropoute, self.dropouti, self.dropouth, self.dropouto = dropouts
        self.dropoutl, self.wdrop, self.n_experts, self.emb = dropoutl, wdrop, n_experts, emb
        self.encoder = nn.Embedding(vocab_size, emb)
        self._build_stack(emb, hidden)
        self.prior = nn.Linear(hidden[-1], n_experts, bias=False)
        self.latent = nn.Linear(hidden[-1], n_experts * emb)
        self.decoder = nn.Linear(emb, vocab_size)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        self.decoder.weight = self.encoder.weight

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = embedding_dropout(self.encoder, tokens, self.dropoute, self.training)
        return locked_dropout(x, self.dropouti, self.training)

    def _run_layer(self, i: int, x: torch.Tensor, hc):
        if not (self.training and self.wdrop > 0):
            return super()._run_layer(i, x, hc)
        lstm = self.rnns[i]
        dropped = {"weight_hh_l0": F.dropout(lstm.weight_hh_l0, self.wdrop, True)}
        h0 = (hc[0].unsqueeze(0).contiguous(), hc[1].unsqueeze(0).contiguous())
        y, (h, c) = functional_call(lstm, dropped, (x, h0))
        return y, (h.squeeze(0), c.squeeze(0))

    def forward(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Log-probabilities (T, B, V) of the mixture and the new state."""
        x = self.embed(tokens)
        new = []
        n = len(self.rnns)
        for i in range(n):
            x, hc = self._run_layer(i, x, state[i])
            x = locked_dropout(x, self.dropouth if i < n - 1 else self.dropouto, self.training)
            new.append(hc)
        T, B, _ = x.shape
        latent = torch.tanh(self.latent(x)).view(T, B * self.n_experts, self.emb)
        latent = locked_dropout(latent, self.dropoutl, self.training)
        logits = self.decoder(latent.view(-1, self.emb))  # (T*B*K, V)
        log_prior = F.log_softmax(self.prior(x), dim=-1).view(-1, self.n_experts, 1)  # (T*B, K, 1)
        log_p = F.log_softmax(logits, dim=-1).view(-1, self.n_experts, self.vocab_size)
        log_prob = torch.logsumexp(log_p + log_prior, dim=1)
        return log_prob.view(T, B, self.vocab_size), tuple(new)
