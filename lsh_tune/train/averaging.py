"""Element-wise running averages of the weights (the "A" in (S)NT-ASGD)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["WeightAverager"]


class WeightAverager:
    """Running average of every parameter with one step counter per element.

    After each optimizer step, :meth:`update` does ``n += 1; avg += (w - avg) / n``. With one
    counter per element, :meth:`restart` can start a fresh average for chosen elements (a weight
    regrown by dynamic sparse training, SNT-ASGD) while the others keep theirs; for dense
    training all counters stay equal and this is plain ASGD averaging from the switch step.
    Tensors are keyed by parameter name (tied tensors appear once).

    The counters are int32 (4 bytes per weight, like the weights): up to 2**31 - 1 updates, against
    1,328 steps per PTB epoch at batch 20. At the paper's stacked LSTM (66M weights) int64 counters
    made up 504 MB of a 1,071 MB per-epoch state and of every trial's GPU memory. A state saved with
    int64 counters loads unchanged (the copy casts).
    """

    #: The counters' dtype.
    COUNT_DTYPE = torch.int32

    def __init__(self, model: nn.Module) -> None:
        self.avg: dict[str, torch.Tensor] = {}
        self.count: dict[str, torch.Tensor] = {}
        for name, p in model.named_parameters():
            self.avg[name] = p.detach().clone()
            self.count[name] = torch.zeros_like(p, dtype=self.COUNT_DTYPE)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights into the averages (call after every optimizer step)."""
        for name, p in model.named_parameters():
            n = self.count[name]
            n += 1
            self.avg[name] += (p.detach() - self.avg[name]) / n.to(p.dtype)

    @torch.no_grad()
    def restart(self, name: str, where: torch.Tensor, value: torch.Tensor | None = None) -> None:
        """Restart the average of the elements of ``name`` selected by the bool mask ``where``.

        Their counter becomes 0 and their average ``value`` (default 0) until the next update.
        """
        self.count[name][where] = 0
        self.avg[name][where] = 0 if value is None else value[where]

    @contextlib.contextmanager
    def swap_in(self, model: nn.Module) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the raw ones come back after."""
        saved = {}
        with torch.no_grad():
            for name, p in model.named_parameters():
                saved[name] = p.detach().clone()
                p.copy_(self.avg[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(saved[name])

    def state_dict(self) -> dict:
        return {"avg": {k: v.clone() for k, v in self.avg.items()},
                "count": {k: v.clone() for k, v in self.count.items()}}

    def load_state_dict(self, d: dict) -> None:
        for k in self.avg:
            self.avg[k].copy_(d["avg"][k])
            self.count[k].copy_(d["count"][k])
