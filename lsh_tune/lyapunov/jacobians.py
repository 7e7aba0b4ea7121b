"""Jacobians of the hidden-state map h_{t-1} -> h_t of the three language models (paper Appendix C).

Two state conventions:

* ``"h"`` (the paper's): the variables are every layer's ``h`` concatenated in layer order,
  N = sum(H_l); an LSTM's ``c_{t-1}`` is held fixed (treated as a constant of the step).
* ``"hc"``: the full state, laid out per layer as ``[h_1, c_1, h_2, c_2, ...]``, N = 2 sum(H_l)
  for LSTMs. An RHN has no cell state, so both conventions give the same N = H Jacobian.

For a stack, layer l reads layer l-1's *new* ``h_t``, so the Jacobian is block lower-triangular
across layers: row block l = [G_l · (h rows of row block l-1), A_l, 0...] with A_l the layer's own
recurrent block and G_l = d state_l,t / d h_{l-1,t}. ``diagonal_blocks()`` gives the A_l alone (what
the ``layered`` QR of :mod:`lsh_tune.lyapunov.spectrum` needs).

A *stepper* maps ``(state, x) -> (jac, new_state)``: ``state`` is the model's state tuple
(each tensor (B, H)), ``x`` the (B, E) embedded input, ``jac`` a :class:`StepJacobian` with
``matmul(Q)`` ((B, N, m) -> (B, N, m), J·Q without forming J when cheaper), ``dense()``
((B, N, N)) and ``diagonal_blocks()`` (one Jacobian per layer: its own recurrent block).
:func:`analytic_stepper` covers :class:`~lsh_tune.models.StackedLSTM`, :class:`~lsh_tune.models.AWDLSTMMoS`
and :class:`~lsh_tune.models.RHN`, vectorised over the batch; :func:`autograd_stepper` works for any
model with ``step`` (``torch.func.jacrev`` + ``vmap``).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable, Protocol

import torch
from torch import nn
from torch.func import jacrev, vmap

from lsh_tune.errors import LSHUsageError, check_choice
from lsh_tune.models.base import RNNLanguageModel, State
from lsh_tune.models.rhn import RHN

__all__ = ["CONVENTIONS", "StepJacobian", "Stepper", "analytic_stepper", "autograd_stepper", "jacobian",
           "make_stepper", "state_size", "state_vector", "supports_analytic"]

CONVENTIONS = ("h", "hc")
# J·Q with fewer columns than this multiplies Q by the stacked gate weights (4H × H) and combines
# gates; from this many columns on, forming the H × H blocks first is faster (measured on CPU).
GATEWISE_BELOW = 8


class StepJacobian(Protocol):
    """J = d s_t / d s_{t-1} of one step, for a batch of B sequences."""

    n: int

    def matmul(self, q: torch.Tensor) -> torch.Tensor:  # pragma: no cover - protocol
        """J·Q for Q of shape (B, N, m)."""

    def dense(self) -> torch.Tensor:  # pragma: no cover - protocol
        """J as a (B, N, N) tensor."""

    def diagonal_blocks(self) -> "list[StepJacobian]":  # pragma: no cover - protocol
        """The layers' own blocks d s_l,t / d s_l,t-1, in layer order (one item for one layer)."""


Stepper = Callable[[State, torch.Tensor], "tuple[StepJacobian, State]"]


def state_size(model: RNNLanguageModel, convention: str = "h") -> int:
    """N, the dimension of the state (and of the Lyapunov spectrum) under ``convention``."""
    check_choice("state", convention, CONVENTIONS)
    state = model.init_state(1)
    if convention == "h":
        return sum(layer[0].shape[-1] for layer in state)
    return sum(t.shape[-1] for layer in state for t in layer)


def state_vector(state: State, convention: str = "h") -> torch.Tensor:
    """The state flattened to (B, N): ``[h_1, h_2, ...]`` (``h``) or ``[h_1, c_1, h_2, ...]`` (``hc``)."""
    check_choice("state", convention, CONVENTIONS)
    if convention == "h":
        return torch.cat([layer[0] for layer in state], dim=-1)
    return torch.cat([t for layer in state for t in layer], dim=-1)


def cast_state(state: State, dtype: torch.dtype) -> State:
    return tuple(tuple(t.to(dtype) for t in layer) for layer in state)


# ----------------------------------------------------------------------------------------------
# Generic dense Jacobian (autograd path, and the fall-back for user models)
# ----------------------------------------------------------------------------------------------
class DenseJacobian:
    """A Jacobian already formed: (B, N, N); ``blocks`` = the layers' state sizes (None: one layer)."""

    def __init__(self, j: torch.Tensor, blocks: list[int] | None = None) -> None:
        self.j = j
        self.n = j.shape[-1]
        self.blocks = blocks

    def matmul(self, q: torch.Tensor) -> torch.Tensor:
        return self.j @ q

    def dense(self) -> torch.Tensor:
        return self.j

    def diagonal_blocks(self) -> list["DenseJacobian"]:
        """The diagonal blocks; J must be block lower-triangular over the layers (checked: exact zeros).

        Raises:
            LSHUsageError: a layer depends on a later layer's previous state.
        """
        if not self.blocks or len(self.blocks) == 1:
            return [self]
        out, pos = [], 0
        for layer, size in enumerate(self.blocks):
            rows = slice(pos, pos + size)
            if bool((self.j[:, rows, pos + size:] != 0).any()):
                raise LSHUsageError(f"qr='layered' needs a Jacobian that is block lower-triangular across layers; "
                                    f"here layer {layer} depends on a later layer's previous state: use qr='joint'")
            out.append(DenseJacobian(self.j[:, rows, rows]))
            pos += size
        return out


def _component_sizes(model: RNNLanguageModel) -> list[list[int]]:
    return [[t.shape[-1] for t in layer] for layer in model.init_state(1)]


def _to_state(full: torch.Tensor, sizes: list[list[int]]) -> State:
    """(..., N_hc) vector in the ``hc`` layout -> state tuple."""
    out, pos = [], 0
    for layer in sizes:
        comps = []
        for n in layer:
            comps.append(full[..., pos:pos + n])
            pos += n
        out.append(tuple(comps))
    return tuple(out)


def _merge_h(v: torch.Tensor, full: torch.Tensor, sizes: list[list[int]]) -> torch.Tensor:
    """Replace the ``h`` pieces of a ``hc``-layout vector ``full`` by those of ``v`` (``h`` layout)."""
    pieces, pos, vpos = [], 0, 0
    for layer in sizes:
        pieces.append(v[..., vpos:vpos + layer[0]])
        vpos += layer[0]
        pos += layer[0]
        rest = sum(layer[1:])
        if rest:
            pieces.append(full[..., pos:pos + rest])
            pos += rest
    return torch.cat(pieces, dim=-1)


def autograd_stepper(model: RNNLanguageModel, *, convention: str = "h",
                     dtype: torch.dtype | None = None) -> Stepper:
    """Stepper whose Jacobian is ``vmap(jacrev(step))`` of ``model.step`` — works for any model.

    In the ``h`` convention every state component but a layer's first (``h``) is held fixed.
    If ``dtype`` differs from the model's, a cast copy of the model is used.
    """
    check_choice("state", convention, CONVENTIONS)
    p = next(model.parameters())
    if dtype is not None and dtype != p.dtype:
        model = copy.deepcopy(model).to(dtype)
    sizes = _component_sizes(model)

    def one(v: torch.Tensor, full: torch.Tensor, x: torch.Tensor):
        merged = v if convention == "hc" else _merge_h(v, full, sizes)
        new = model.step(_to_state(merged.unsqueeze(0), sizes), x.unsqueeze(0))
        new_full = state_vector(new, "hc").squeeze(0)
        return state_vector(new, convention).squeeze(0), new_full

    jac_fn = vmap(jacrev(one, argnums=0, has_aux=True))

    blocks = [layer[0] if convention == "h" else sum(layer) for layer in sizes]

    def stepper(state: State, x: torch.Tensor):
        j, new_full = jac_fn(state_vector(state, convention), state_vector(state, "hc"), x)
        return DenseJacobian(j, blocks), _to_state(new_full, sizes)

    return stepper


# ----------------------------------------------------------------------------------------------
# LSTM stacks (StackedLSTM, AWDLSTMMoS): all layers are single-layer nn.LSTM, gates i, f, g, o
# ----------------------------------------------------------------------------------------------
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
    out = []
    for lstm in model.rnns:
        h = lstm.hidden_size
        u4 = lstm.weight_hh_l0.detach().to(dtype).reshape(4, h, h)
        w4 = lstm.weight_ih_l0.detach().to(dtype).reshape(4, h, -1)
        bias = (lstm.bias_ih_l0.detach() + lstm.bias_hh_l0.detach()).to(dtype)
        out.append((u4, w4, bias))
    return out


def _lstm_layer(u4, w4, bias, h, c, x, convention):
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


def _lstm_stepper(model: nn.Module, convention: str, dtype: torch.dtype) -> Stepper:
    weights = _lstm_weights(model, dtype)

    def stepper(state: State, x: torch.Tensor):
        layers, new = [], []
        for (u4, w4, bias), (h, c) in zip(weights, state):
            layer, hc = _lstm_layer(u4, w4, bias, h, c, x, convention)
            layers.append(layer)
            new.append(hc)
            x = hc[0]
        return LSTMStackJacobian(layers), tuple(new)

    return stepper


# ----------------------------------------------------------------------------------------------
# RHN (coupled gates): J = F_L ... F_1, F_l = diag(dH_l) R_H,l + diag(dT_l) R_T,l + diag(1 - t_l)
# ----------------------------------------------------------------------------------------------
class RHNJacobian:
    """Product of the L highway factors of one RHN time step; ``coef`` (L, B, 3, H), ``r`` (L, 2H, H)."""

    def __init__(self, coef: list[torch.Tensor], r: list[torch.Tensor]) -> None:
        self.coef, self.r = coef, r
        self.n = r[0].shape[1]

    def matmul(self, q: torch.Tensor) -> torch.Tensor:
        hh = self.n
        if q.shape[-1] >= GATEWISE_BELOW:
            for cf, r in zip(self.coef, self.r):
                q = self._factor(cf, r) @ q
            return q
        for cf, r in zip(self.coef, self.r):
            y = torch.matmul(r, q)
            q = cf[:, 0, :, None] * y[:, :hh] + cf[:, 1, :, None] * y[:, hh:] + cf[:, 2, :, None] * q
        return q

    def _factor(self, cf: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        hh = self.n
        f = cf[:, 0, :, None] * r[:hh]
        f.addcmul_(cf[:, 1, :, None], r[hh:])
        return f + torch.diag_embed(cf[:, 2])

    def diagonal_blocks(self) -> list["RHNJacobian"]:
        return [self]  # one layer (depth is within the step)

    def dense(self) -> torch.Tensor:
        p = self._factor(self.coef[0], self.r[0])
        for cf, r in zip(self.coef[1:], self.r[1:]):
            p = self._factor(cf, r) @ p
        return p


def _rhn_stepper(model: RHN, dtype: torch.dtype) -> Stepper:
    w_in = model.input_proj.weight.detach().to(dtype)
    rs = [layer.weight.detach().to(dtype) for layer in model.highway]
    bs = [layer.bias.detach().to(dtype) for layer in model.highway]
    hh = model.hidden

    def stepper(state: State, x: torch.Tensor):
        s = state[0][0]
        xproj = x @ w_in.T
        coef = []
        for l, (r, b) in enumerate(zip(rs, bs)):
            pre = s @ r.T + b
            if l == 0:
                pre = pre + xproj
            ta, t = torch.tanh(pre[:, :hh]), torch.sigmoid(pre[:, hh:])
            coef.append(torch.stack([t * (1 - ta * ta), (ta - s) * t * (1 - t), 1 - t], dim=1))
            s = ta * t + s * (1 - t)
        return RHNJacobian(coef, rs), ((s,),)

    return stepper


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------
def _is_lstm_stack(model: nn.Module) -> bool:
    from lsh_tune.models.lstm import _LSTMStack

    rnns = getattr(model, "rnns", None)
    if not isinstance(model, _LSTMStack) or type(model).step is not _LSTMStack.step or rnns is None:
        return False
    return all(isinstance(r, nn.LSTM) and r.num_layers == 1 and not r.bidirectional and r.bias
               and r.proj_size == 0 for r in rnns)


def supports_analytic(model: nn.Module) -> bool:
    """True for the built-in StackedLSTM, AWDLSTMMoS and RHN (unless ``step`` is overridden)."""
    if isinstance(model, RHN):
        return type(model).step is RHN.step
    return _is_lstm_stack(model)


def analytic_stepper(model: RNNLanguageModel, *, convention: str = "h",
                     dtype: torch.dtype | None = None) -> Stepper:
    """Closed-form Jacobians (Appendix C), vectorised over the batch.

    Raises:
        TypeError: the model is not one of the built-in architectures (use :func:`autograd_stepper`).
    """
    check_choice("state", convention, CONVENTIONS)
    dtype = dtype or next(model.parameters()).dtype
    if isinstance(model, RHN) and supports_analytic(model):
        return _rhn_stepper(model, dtype)
    if _is_lstm_stack(model):
        return _lstm_stepper(model, convention, dtype)
    raise TypeError(f"no analytic Jacobian for {type(model).__name__}; use the autograd path")


def make_stepper(model: RNNLanguageModel, *, convention: str = "h", dtype: torch.dtype | None = None,
                 method: str = "analytic") -> Stepper:
    """Analytic stepper where available, else (or with ``method='autograd'``) the autograd one."""
    check_choice("jacobian", method, ("analytic", "autograd"))
    if method == "analytic" and supports_analytic(model):
        return analytic_stepper(model, convention=convention, dtype=dtype)
    return autograd_stepper(model, convention=convention, dtype=dtype)


def jacobian(model: RNNLanguageModel, state: State, x: torch.Tensor, *, convention: str = "h",
             method: str = "analytic") -> tuple[torch.Tensor, State]:
    """Dense J (B, N, N) of one step from ``state`` with input ``x`` (B, E), and the new state.

    Computed in the dtype of ``state``. ``method``: ``analytic`` (falls back to autograd for
    models without a closed form) or ``autograd``.
    """
    dtype = state[0][0].dtype
    with torch.no_grad() if method == "analytic" else contextlib.nullcontext():
        jac, new = make_stepper(model, convention=convention, dtype=dtype, method=method)(state, x.to(dtype))
        return jac.dense(), new
