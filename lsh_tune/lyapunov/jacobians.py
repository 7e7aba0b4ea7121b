"""Jacobians of the hidden-state map h_{t-1} -> h_t of a language model: the generic part.

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
:func:`analytic_stepper` uses the closed form a model's registry entry declares
(:class:`~lsh_tune.models.ModelEntry` ``stepper``; the built-ins' Appendix C Jacobians live in
:mod:`lsh_tune.models.lstm_jacobian` and :mod:`lsh_tune.models.rhn_jacobian`);
:func:`autograd_stepper` works for any model with ``step`` (``torch.func.jacrev`` + ``vmap``).
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
from lsh_tune.models.registry import entry_for_model

__all__ = ["CONVENTIONS", "StepJacobian", "Stepper", "analytic_stepper", "autograd_stepper", "jacobian",
           "make_stepper", "state_size", "state_vector", "supports_analytic"]

CONVENTIONS = ("h", "hc")


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
# Dispatch through the model registry
# ----------------------------------------------------------------------------------------------
def _analytic(model: nn.Module, convention: str, dtype: torch.dtype | None) -> Stepper | None:
    """The closed-form stepper the model's registry entry declares, or None (none, or ``step`` overridden)."""
    check_choice("state", convention, CONVENTIONS)
    entry = entry_for_model(model)
    if entry is None or entry.stepper is None or type(model).step is not entry.cls.step:
        return None
    return entry.stepper(model, convention, dtype or next(model.parameters()).dtype)


def supports_analytic(model: nn.Module) -> bool:
    """True where the model's registry entry has a closed-form stepper that fits this instance.

    The built-in StackedLSTM, AWDLSTMMoS and RHN have one, unless a subclass overrides ``step``.
    """
    return _analytic(model, "h", None) is not None


def analytic_stepper(model: RNNLanguageModel, *, convention: str = "h",
                     dtype: torch.dtype | None = None) -> Stepper:
    """Closed-form Jacobians (Appendix C) declared by the model's registry entry, vectorised over the batch.

    Raises:
        TypeError: the model has no closed form (:func:`supports_analytic`; use :func:`autograd_stepper`).
    """
    stepper = _analytic(model, convention, dtype)
    if stepper is None:
        raise TypeError(f"no analytic Jacobian for {type(model).__name__}; use the autograd path")
    return stepper


def make_stepper(model: RNNLanguageModel, *, convention: str = "h", dtype: torch.dtype | None = None,
                 method: str = "analytic") -> Stepper:
    """Analytic stepper where the model's registry entry has one, else (or with ``method='autograd'``)
    the autograd one."""
    check_choice("jacobian", method, ("analytic", "autograd"))
    stepper = _analytic(model, convention, dtype) if method == "analytic" else None
    return autograd_stepper(model, convention=convention, dtype=dtype) if stepper is None else stepper


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
