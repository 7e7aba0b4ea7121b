"""Closed-form Jacobians of LSTM stacks (paper Appendix C): :class:`StackedLSTM` and :class:`AWDLSTMMoS`.

Every layer is a single-layer ``nn.LSTM`` (gates i, f, g, o). Layer l reads layer l-1's new
``h_t``, so the stack's J is block lower-triangular across layers: row block l is
[G_l · (h rows of row block l-1), A_l, 0...] with A_l the layer's own recurrent block and
G_l = d state_l,t / d h_{l-1,t}. State conventions (``h``: c_{t-1} held fixed, N = Σ H_l;
``hc``: [h_1, c_1, h_2, c_2, ...]) as in :mod:`lsh_tune.lyapunov.jacobians`, whose
``StepJacobian`` protocol these objects follow (``n``, ``matmul``, ``dense``, ``diagonal_blocks``).
Torch only; shapes are batched over B sequences.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lsh_tune.models.gatewise import GATEWISE_BELOW

__all__ = ["LSTMStackJacobian", "lstm_stack_stepper"]


def _combine(d: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum_g d[:, g, :, None] * y[:, g] for d (B, 4, H) and y (B, 4, H, m) -> (B, H, m)."""
    z = d[:, 0, :, None] * y[:, 0]
    for g in range(1, 4):
        z.addcmul_(d[:, g, :, None], y[:, g])
    return z


def _combine_dense(d: torch.Tensor, w4: torch.Tensor) -> torch.Tensor:
    """sum_g diag(d[:, g]) w4[g] for d (B, 4, H) and w4 (4, H, K) -> (B, H, K)."""
    z = d[:, 0, :, None] * w4[0]
    for g in range(1, 4):
        z.addcmul_(d[:, g, :, None], w4[g])
    return z


class _LSTMLayerJac:
    """One layer's part of the stack Jacobian.

    ``d`` (B, R, 4, H): coefficients of the gate pre-activations in the R output row groups
    (R = 1: h; R = 2: h, c). ``dprev`` (B, 2, H) (``hc`` only): d h_t / d c_{t-1} and d c_t / d c_{t-1},
    both diagonal. ``u4`` (4, H, H) and ``w4`` (4, H, I): recurrent and input weights per gate.
    """

    def __init__(self, d, dprev, u4, w4) -> None:
        self.d, self.dprev, self.u4, self.w4 = d, dprev, u4, w4
        self.h = u4.shape[1]
        self.rows = d.shape[1] * self.h

    def matmul(self, q: torch.Tensor, dh_in: torch.Tensor | None) -> torch.Tensor:
        """Row block times Q: q (B, rows, m) this layer's state rows; dh_in (B, I, m) or None."""
        hh, m = self.h, q.shape[-1]
        if m >= GATEWISE_BELOW:
            z = self.local_dense() @ q
            return z if dh_in is None else z + self.input_dense() @ dh_in
        y = torch.matmul(self.u4.reshape(4 * hh, hh), q[:, :hh])
        if dh_in is not None:
            y = y + torch.matmul(self.w4.reshape(4 * hh, -1), dh_in)
        y = y.view(q.shape[0], 4, hh, m)
        z = [_combine(self.d[:, r], y) for r in range(self.d.shape[1])]
        if self.dprev is not None:
            qc = q[:, hh:]
            z[0].addcmul_(self.dprev[:, 0, :, None], qc)
            z[1].addcmul_(self.dprev[:, 1, :, None], qc)
        return torch.cat(z, dim=1)

    def local_dense(self) -> torch.Tensor:
        blocks = [_combine_dense(self.d[:, r], self.u4) for r in range(self.d.shape[1])]
        if self.dprev is None:
            return blocks[0]
        top = torch.cat([blocks[0], torch.diag_embed(self.dprev[:, 0])], dim=2)
        bottom = torch.cat([blocks[1], torch.diag_embed(self.dprev[:, 1])], dim=2)
        return torch.cat([top, bottom], dim=1)

    def input_dense(self) -> torch.Tensor:
        return torch.cat([_combine_dense(self.d[:, r], self.w4) for r in range(self.d.shape[1])], dim=1)


class _LSTMOwnBlock:
    """A layer's own recurrent block d s_l,t / d s_l,t-1 (the stack Jacobian's diagonal block)."""

    def __init__(self, layer: _LSTMLayerJac) -> None:
        self.layer = layer
        self.n = layer.rows

    def matmul(self, q: torch.Tensor) -> torch.Tensor:
        return self.layer.matmul(q, None)

    def dense(self) -> torch.Tensor:
        return self.layer.local_dense()

    def diagonal_blocks(self) -> list["_LSTMOwnBlock"]:
        return [self]


class LSTMStackJacobian:
    """Block lower-triangular Jacobian of a stack of LSTM layers (see module docstring)."""

    def __init__(self, layers: list[_LSTMLayerJac]) -> None:
        self.layers = layers
        self.n = sum(layer.rows for layer in layers)

    def matmul(self, q: torch.Tensor) -> torch.Tensor:
        out, pos, dh = [], 0, None
        for layer in self.layers:
            z = layer.matmul(q[:, pos:pos + layer.rows], dh)
            out.append(z)
            dh = z[:, :layer.h]
            pos += layer.rows
        return torch.cat(out, dim=1)

    def diagonal_blocks(self) -> list[_LSTMOwnBlock]:
        return [_LSTMOwnBlock(layer) for layer in self.layers]

    def dense(self) -> torch.Tensor:
        b = self.layers[0].d.shape[0]
        ref = self.layers[0].u4
        j = ref.new_zeros((b, self.n, self.n))
        pos, prev_h = 0, None
        for layer in self.layers:
            rows = slice(pos, pos + layer.rows)
            j[:, rows, rows] = layer.local_dense()
            if prev_h is not None:
                j[:, rows, :pos] = layer.input_dense() @ j[:, prev_h, :pos]
            prev_h = slice(pos, pos + layer.h)
            pos += layer.rows
        return j


def _lstm_weights(model: nn.Module, dtype: torch.dtype) -> list[tuple[torch.Tensor, ...]]:
    """Per layer: u4 (4, H, H), w4 (4, H, I) and the summed bias (4H,), detached, in ``dtype``."""
    out = []
    for lstm in model.rnns:
        h = lstm.hidden_size
        u4 = lstm.weight_hh_l0.detach().to(dtype).reshape(4, h, h)
        w4 = lstm.weight_ih_l0.detach().to(dtype).reshape(4, h, -1)
        bias = (lstm.bias_ih_l0.detach() + lstm.bias_hh_l0.detach()).to(dtype)
        out.append((u4, w4, bias))
    return out


def _lstm_layer(u4, w4, bias, h, c, x, convention):
    """One layer's step from (B, H) ``h``, ``c`` and (B, I) ``x``: its Jacobian part and (h_t, c_t)."""
    hh = u4.shape[1]
    y = x @ w4.reshape(4 * hh, -1).T + h @ u4.reshape(4 * hh, hh).T + bias
    i, f, g, o = y.chunk(4, dim=-1)
    i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
    c_new = f * c + i * g
    tc = torch.tanh(c_new)
    h_new = o * tc
    dhdc = o * (1 - tc * tc)
    dc = torch.stack([g * i * (1 - i), c * f * (1 - f), i * (1 - g * g), torch.zeros_like(o)], dim=1)
    dh = dc * dhdc[:, None]
    dh[:, 3] = tc * o * (1 - o)
    if convention == "h":
        layer = _LSTMLayerJac(dh[:, None], None, u4, w4)
    else:
        layer = _LSTMLayerJac(torch.stack([dh, dc], dim=1), torch.stack([dhdc * f, f], dim=1), u4, w4)
    return layer, (h_new, c_new)


def _plain_lstm_layers(model: nn.Module) -> bool:
    """``model.rnns`` holds only single-layer, unidirectional ``nn.LSTM``s with biases and no projection."""
    rnns = getattr(model, "rnns", None)
    if rnns is None:
        return False
    return all(isinstance(r, nn.LSTM) and r.num_layers == 1 and not r.bidirectional and r.bias
               and r.proj_size == 0 for r in rnns)


def lstm_stack_stepper(model: nn.Module, convention: str, dtype: torch.dtype) -> Callable | None:
    """Stepper ``(state, x) -> (LSTMStackJacobian, new_state)`` of an LSTM stack in ``dtype``.

    ``state`` is the model's ((h, c), ...) with (B, H_l) tensors, ``x`` the (B, E) embedded input.
    Returns ``None`` unless every layer is a plain single-layer ``nn.LSTM`` (no closed form here).
    """
    if not _plain_lstm_layers(model):
        return None
    weights = _lstm_weights(model, dtype)

    def stepper(state, x: torch.Tensor):
        layers, new = [], []
        for (u4, w4, bias), (h, c) in zip(weights, state):
            layer, hc = _lstm_layer(u4, w4, bias, h, c, x, convention)
            layers.append(layer)
            new.append(hc)
            x = hc[0]
        return LSTMStackJacobian(layers), tuple(new)

    return stepper
