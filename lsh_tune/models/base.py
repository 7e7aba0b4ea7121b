"""Common interface of the recurrent language models.

Every model is an ordinary ``nn.Module``; sparsity lives elsewhere (``lsh_tune.sparse``).
Shapes: tokens are (T, B) LongTensors; a *state* is a tuple over layers, each a tuple of
(B, H_layer) tensors — ``(h, c)`` for LSTM layers, ``(h,)`` for RHN layers.
"""
from __future__ import annotations

import abc

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["RNNLanguageModel", "State", "embedding_dropout", "locked_dropout"]

State = tuple[tuple[torch.Tensor, ...], ...]


def embedding_dropout(embed: nn.Embedding, tokens: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Word-level dropout: whole embedding rows are zeroed with probability ``p`` (AWD-LSTM)."""
    weight = embed.weight
    if training and p > 0:
        keep = weight.new_empty((weight.size(0), 1)).bernoulli_(1 - p) / (1 - p)
        weight = weight * keep
    return F.embedding(tokens, weight)


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout on (T, B, F): one mask per sequence, shared over time."""
    if not training or p <= 0:
        return x
    mask = x.new_empty((1, x.size(1), x.size(2))).bernoulli_(1 - p) / (1 - p)
    return x * mask


class RNNLanguageModel(nn.Module):
    """Base class: embedding → recurrent stack → (log-)softmax over the vocabulary.

    Subclasses implement :meth:`init_state`, :meth:`step` and :meth:`forward`.
    ``hidden_sizes`` lists the size of ``h`` of each recurrent layer; ``state_size`` is their sum
    (the dimension N of the Lyapunov spectrum in the paper's ``h`` convention).
    """

    vocab_size: int
    hidden_sizes: tuple[int, ...]
    encoder: nn.Embedding

    @property
    def state_size(self) -> int:
        return int(sum(self.hidden_sizes))

    @abc.abstractmethod
    def init_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` sequences (h0 = c0 = 0)."""

    @abc.abstractmethod
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embeddings (T, B, E) of ``tokens`` (T, B); word/embedding dropout only in train mode."""

    @abc.abstractmethod
    def step(self, state: State, x: torch.Tensor) -> State:
        """One time step of the recurrent stack without dropout: x is (B, E)."""

    def use_compiled_cell(self) -> bool:
        """Switch training to a ``torch.compile``'d recurrent cell if this model has one; returns whether
        it has (the base class: no; :class:`~lsh_tune.models.rhn.RHN`: yes)."""
        return False

    @staticmethod
    def detach_state(state: State) -> State:
        return tuple(tuple(t.detach() for t in layer) for layer in state)

    @staticmethod
    def h_vector(state: State) -> torch.Tensor:
        """All layers' ``h`` concatenated: (B, state_size)."""
        return torch.cat([layer[0] for layer in state], dim=-1)

    def _zeros(self, batch_size: int, size: int) -> torch.Tensor:
        p = self.encoder.weight
        return torch.zeros(batch_size, size, dtype=p.dtype, device=p.device)
