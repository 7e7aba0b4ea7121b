"""Batching of a token stream for truncated BPTT."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

__all__ = ["batchify", "get_batch", "bptt_batches"]


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into ``batch_size`` columns: shape (n_steps, batch_size).

    Tokens that do not fill a whole row are dropped, as in the AWD-LSTM loaders.
    """
    n = data.numel() // batch_size
    if n < 2:
        raise ValueError(f"batch_size={batch_size} leaves fewer than 2 steps for {data.numel()} tokens")
    return data[: n * batch_size].view(batch_size, n).t().contiguous()


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (seq_len', B) and next-token targets (seq_len', B) starting at row ``i``."""
    seq_len = min(seq_len, source.size(0) - 1 - i)
    return source[i: i + seq_len], source[i + 1: i + 1 + seq_len]


def bptt_batches(source: torch.Tensor, bptt: int, *, variable: bool = False,
                 rng: np.random.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Yield (inputs, targets, seq_len) windows over ``source`` (n_steps, B).

    ``variable=True`` draws AWD-style lengths: ``bptt`` with probability 0.95 else ``bptt/2``,
    then N(that, 5), at least 5 tokens. Lengths come from ``rng`` (seeded by the caller).
    """
    i = 0
    while i < source.size(0) - 1:
        seq_len = bptt
        if variable:
            if rng is None:
                raise ValueError("variable-length BPTT needs an rng")
            base = bptt if rng.random() < 0.95 else bptt / 2.0
            seq_len = max(5, int(rng.normal(base, 5)))
        x, y = get_batch(source, i, seq_len)
        yield x, y, x.size(0)
        i += x.size(0)
