"""Stacked LSTM language model (Zaremba-style) and the LSTM-stack base it shares with AWD-LSTM-MoS."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from lsh_tune.models.base import RNNLanguageModel, State, embedding_dropout
from lsh_tune.models.lstm_jacobian import lstm_stack_stepper
from lsh_tune.models.registry import ModelEntry, mask_groups_by_name, register_model
from lsh_tune.models.specs import ModelSpec, TrainSpec

__all__ = ["LSTMStack", "LSTM_LEAF_GROUPS", "StackedLSTM", "lstm_cell_step"]


def lstm_cell_step(lstm: nn.LSTM, h: torch.Tensor, c: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a single-layer ``nn.LSTM`` (gate order i, f, g, o): (B, H) states, (B, I) input."""
    gates = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


class LSTMStack(RNNLanguageModel):
    """Embedding + a list of single-layer ``nn.LSTM`` modules (``self.rnns``).

    Its ``step`` has the closed-form Jacobian of :func:`lsh_tune.models.lstm_jacobian.lstm_stack_stepper`.
    """

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


class StackedLSTM(LSTMStack):
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


#: Mask groups of an LSTM layer's matrices, by parameter-name start (``rnns.0.weight_hh_l0``).
LSTM_LEAF_GROUPS = {"weight_ih": "input", "weight_hh": "recurrent"}

_D0 = (0.0, 0.0, 0.0, 0.0)
#: Table A1 (``paper``: emb 1500, 2×1500, untied → 66.0M on PTB) and two small presets.
_PRESETS = {
    "paper": (ModelSpec("stacked_lstm", 1500, (1500, 1500), False, (0.0, 0.0, 0.65, 0.0)),
              TrainSpec(lr=40.0, batch_size=20, bptt=35, epochs=100)),
    "small": (ModelSpec("stacked_lstm", 200, (200, 200), False, (0.0, 0.0, 0.2, 0.0)),
              TrainSpec(lr=20.0, batch_size=20, bptt=35, epochs=10)),
    "tiny": (ModelSpec("stacked_lstm", 64, (64, 64), False, _D0),
             TrainSpec(lr=40.0, batch_size=10, bptt=35, epochs=4)),
}


def _build(spec: ModelSpec, vocab_size: int) -> StackedLSTM:
    return StackedLSTM(vocab_size, spec.emb, spec.hidden, tied=spec.tied, dropouts=spec.dropouts)


register_model(ModelEntry(
    "stacked_lstm", StackedLSTM, _build, _PRESETS,
    mask_groups_by_name({"encoder": "embedding", "decoder": "output"}, LSTM_LEAF_GROUPS),
    stepper=lstm_stack_stepper))
