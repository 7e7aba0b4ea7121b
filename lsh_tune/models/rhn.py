"""Recurrent Highway Network language model (Zilly et al. 2017), coupled carry gate."""
from __future__ import annotations

import warnings

import torch
from torch import nn
import torch.nn.functional as F

from lsh_tune.models.base import RNNLanguageModel, State, embedding_dropout, locked_dropout
from lsh_tune.models.registry import ModelEntry, mask_groups_by_name, register_model
from lsh_tune.models.rhn_jacobian import rhn_stepper
from lsh_tune.models.specs import ModelSpec, TrainSpec

__all__ = ["CELLS", "RHN", "highway_update"]

#: How :meth:`RHN.forward` runs a time step's highway layers in training (``RHN.cell``):
#: ``fused`` — :func:`highway_update`'s hand-written backward (the default);
#: ``autograd`` — the plain composite and autograd's backward;
#: ``compiled`` — the plain composite of all L layers of a time step through ``torch.compile``
#: (Inductor fuses the pointwise work of forward and backward; compiled on first use, about 20 s
#: on a CPU for the ``small`` preset, cached on disk by Inductor). For GPUs: inside a CUDA graph the
#: issue-19 H200 run measured 16.9 ms per paper-RHN batch against 33 ms uncompiled.
CELLS = ("fused", "autograd", "compiled")


class _FusedHighwayUpdate(torch.autograd.Function):
    """``s + σ(p_T) ⊙ (tanh(p_H) − s)`` for ``pre = [p_H | p_T]`` with a hand-written backward.

    Autograd of the composite form launches about 13 backward kernels per highway layer (two of
    them zero-fill a (B, 2H) tensor for each slice of ``pre``); this backward launches six and
    writes the gradient of ``pre`` in one piece. Forward: 4 kernels instead of 6.
    """

    @staticmethod
    def forward(ctx, pre: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        H = s.size(-1)
        h = torch.tanh(pre[..., :H])
        t = torch.sigmoid(pre[..., H:])
        d = h - s
        ctx.save_for_backward(h, t, d)
        return torch.addcmul(s, t, d)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, t, d = ctx.saved_tensors
        gt = g * t
        # d/dp_H = g t (1 − h²) (tanh_backward); d/dp_T = g d t (1 − t) (sigmoid_backward); d/ds = g (1 − t)
        g_pre = torch.cat((torch.ops.aten.tanh_backward(gt, h), torch.ops.aten.sigmoid_backward(g * d, t)), dim=-1)
        return g_pre, g - gt


def highway_update(pre: torch.Tensor, s: torch.Tensor, *, fused: bool = True) -> torch.Tensor:
    """One coupled-gate highway update: ``s + t ⊙ (tanh(p_H) − s)``, ``t = σ(p_T)``.

    Args:
        pre: (B, 2H) pre-activations ``[p_H | p_T]``.
        s: (B, H) state entering the layer.
        fused: use the hand-written backward (training); ``False`` is the plain composite, which
            ``torch.func`` transforms (the Lyapunov engine's autograd Jacobian) need.

    Returns:
        (B, H) new state; equal to ``tanh(p_H) ⊙ t + s ⊙ (1 − t)`` up to float rounding.
    """
    if fused and torch.is_grad_enabled() and (pre.requires_grad or s.requires_grad):
        return _FusedHighwayUpdate.apply(pre, s)
    H = s.size(-1)
    return torch.addcmul(s, torch.sigmoid(pre[..., H:]), torch.tanh(pre[..., :H]) - s)


class RHN(RNNLanguageModel):
    """One RHN layer of recurrence depth L with coupled gates (c = 1 − t).

    Per time step, with s_0 = h_{t−1}:
    ``s_l = tanh(R_H,l s_{l−1} + [l=1] W_H x) ⊙ t_l + s_{l−1} ⊙ (1 − t_l)``,
    ``t_l = σ(R_T,l s_{l−1} + [l=1] W_T x)``; h_t = s_L (computed as ``s + t ⊙ (tanh(·) − s)``,
    :func:`highway_update`).
    Parameters: ``input_proj`` = [W_H; W_T] (2H × E, no bias); ``highway[l]`` = [R_H,l; R_T,l] with
    bias (2H × H). Transform-gate biases start at ``gate_bias`` (−2) so early layers carry.
    Dropouts ``(dropoute, dropouti, dropouth, dropouto)``: word rows, locked on the embedding,
    a variational mask on the recurrent state entering each step, locked on the output.
    Its ``step`` has the closed-form Jacobian of :func:`lsh_tune.models.rhn_jacobian.rhn_stepper`.
    """

    def __init__(self, vocab_size: int, emb: int, hidden: int, *, depth: int = 10, tied: bool = True,
                 dropouts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
                 gate_bias: float = -2.0) -> None:
        super().__init__()
        if tied and hidden != emb:
            raise ValueError(f"tied weights need hidden {hidden} == emb {emb}")
        self.vocab_size, self.hidden, self.depth = vocab_size, hidden, depth
        #: how training runs the highway cell, one of :data:`CELLS` (set with :meth:`set_cell`)
        self.cell = "fused"
        self._compiled_highway = None  # the torch.compile'd time step, built on first use (never pickled)
        self._compiled_ran = False     # it has run once: later errors are real errors, not a failed compile
        self.hidden_sizes = (hidden,)
        self.dropoute, self.dropouti, self.dropouth, self.dropouto = dropouts
        self.encoder = nn.Embedding(vocab_size, emb)
        self.input_proj = nn.Linear(emb, 2 * hidden, bias=False)
        self.highway = nn.ModuleList(nn.Linear(hidden, 2 * hidden) for _ in range(depth))
        self.decoder = nn.Linear(hidden, vocab_size)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        with torch.no_grad():
            for layer in self.highway:
                layer.bias[hidden:].fill_(gate_bias)
        if tied:
            self.decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_state(self, batch_size: int) -> State:
        return ((self._zeros(batch_size, self.hidden),),)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = embedding_dropout(self.encoder, tokens, self.dropoute, self.training)
        return locked_dropout(x, self.dropouti, self.training)

    def _highway(self, s: torch.Tensor, xproj: torch.Tensor, s_mask: torch.Tensor | None, *,
                 fused: bool) -> torch.Tensor:
        """Run the L highway layers of one time step: ``s`` (B, H), ``xproj`` (B, 2H) → (B, H)."""
        for l, layer in enumerate(self.highway):
            inp = s if s_mask is None else s * s_mask
            pre = layer(inp)
            if l == 0:
                pre = pre + xproj
            s = highway_update(pre, s, fused=fused)
        return s

    def step(self, state: State, x: torch.Tensor) -> State:
        return ((self._highway(state[0][0], self.input_proj(x), None, fused=False),),)

    def set_cell(self, cell: str) -> None:
        """Choose how training runs the highway cell: one of :data:`CELLS` (same function, other kernels)."""
        if cell not in CELLS:
            from lsh_tune.errors import LSHUsageError
            raise LSHUsageError(f"cell={cell!r} is not allowed; choose from {', '.join(CELLS)}")
        self.cell = cell

    def use_compiled_cell(self) -> bool:
        """Switch training to the ``compiled`` cell (see :data:`CELLS`); ``True``: this model has one."""
        self.set_cell("compiled")
        return True

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state, _compiled_highway=None, _compiled_ran=False)  # a compiled function does not pickle
        return state

    def _plain_highway(self, s: torch.Tensor, xproj: torch.Tensor, s_mask: torch.Tensor | None) -> torch.Tensor:
        return self._highway(s, xproj, s_mask, fused=False)

    def _time_step(self, s: torch.Tensor, xproj: torch.Tensor, s_mask: torch.Tensor | None) -> torch.Tensor:
        """One training time step under ``self.cell``: (B, H), (B, 2H) → (B, H)."""
        if self.cell != "compiled" or not torch.is_grad_enabled():
            return self._highway(s, xproj, s_mask, fused=self.cell == "fused")
        if self._compiled_highway is None:
            self._compiled_highway = torch.compile(self._plain_highway, dynamic=False)
        if self._compiled_ran:
            return self._compiled_highway(s, xproj, s_mask)
        try:
            out = self._compiled_highway(s, xproj, s_mask)
        except Exception as exc:  # noqa: BLE001 - no compiler/Triton here: train on, uncompiled
            warnings.warn(f"torch.compile of the RHN cell failed ({type(exc).__name__}: {exc}); "
                          "training uses the fused cell", RuntimeWarning, stacklevel=2)
            self.cell, self._compiled_highway = "fused", None
            return self._highway(s, xproj, s_mask, fused=True)
        self._compiled_ran = True
        return out

    def forward(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Log-probabilities (T, B, V) and the new state."""
        x = self.embed(tokens)
        xproj = self.input_proj(x)  # (T, B, 2H): the input enters the first highway layer only
        s = state[0][0]
        s_mask = None
        if self.training and self.dropouth > 0:
            s_mask = s.new_empty(s.shape).bernoulli_(1 - self.dropouth) / (1 - self.dropouth)
        outs = []
        for t in range(x.size(0)):
            s = self._time_step(s, xproj[t], s_mask)
            outs.append(s)
        y = locked_dropout(torch.stack(outs), self.dropouto, self.training)
        return F.log_softmax(self.decoder(y), dim=-1), ((s,),)


_D0 = (0.0, 0.0, 0.0, 0.0)
#: Table A1 (``paper``: emb = hidden 830, depth 10, tied → 23.5M on PTB) and two small presets.
_PRESETS = {
    "paper": (ModelSpec("rhn", 830, (830,), True, (0.2, 0.65, 0.25, 0.62), depth=10),
              TrainSpec(lr=15.0, batch_size=20, bptt=35, epochs=500, weight_decay=1e-7)),
    "small": (ModelSpec("rhn", 200, (200,), True, (0.0, 0.2, 0.1, 0.2), depth=4),
              TrainSpec(lr=15.0, batch_size=20, bptt=35, epochs=10, weight_decay=1e-7)),
    "tiny": (ModelSpec("rhn", 64, (64,), True, _D0, depth=3),
             TrainSpec(lr=15.0, batch_size=20, bptt=35, epochs=3, weight_decay=1e-7)),
}


def _build(spec: ModelSpec, vocab_size: int) -> RHN:
    return RHN(vocab_size, spec.emb, spec.hidden[0], depth=spec.depth, tied=spec.tied, dropouts=spec.dropouts)


register_model(ModelEntry(
    "rhn", RHN, _build, _PRESETS,
    mask_groups_by_name({"encoder": "embedding", "input_proj": "input", "highway": "recurrent",
                         "decoder": "output"}),
    stepper=rhn_stepper))
