"""Closed-form Jacobian of the RHN step (paper Appendix C), coupled carry gate.

With s_0 = h_{t-1} and L highway layers, J = F_L ... F_1 where
F_l = diag(dH_l) R_H,l + diag(dT_l) R_T,l + diag(1 - t_l): dH_l = t_l (1 - tanh²), dT_l =
(tanh - s_{l-1}) t_l (1 - t_l). An RHN has no cell state, so both state conventions of
:mod:`lsh_tune.lyapunov.jacobians` give this N = H Jacobian; it follows that module's
``StepJacobian`` protocol. Torch only; shapes are batched over B sequences.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lsh_tune.models.gatewise import GATEWISE_BELOW

__all__ = ["RHNJacobian", "rhn_stepper"]


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


def rhn_stepper(model: nn.Module, convention: str, dtype: torch.dtype) -> Callable:
    """Stepper ``(state, x) -> (RHNJacobian, new_state)`` of an :class:`~lsh_tune.models.RHN` in ``dtype``.

    ``state`` is ((s,),) with s (B, H), ``x`` the (B, E) embedded input; ``convention`` makes no
    difference (no cell state).
    """
    w_in = model.input_proj.weight.detach().to(dtype)
    rs = [layer.weight.detach().to(dtype) for layer in model.highway]
    bs = [layer.bias.detach().to(dtype) for layer in model.highway]
    hh = model.hidden

    def stepper(state, x: torch.Tensor):
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
