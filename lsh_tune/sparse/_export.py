"""A masked model's weights as a plain state dict of torch sparse CSR tensors, and back.

The exported state dict holds, for every state-dict key whose tensor is a masked parameter (or an
alias of one, such as a tied ``decoder.weight``), a ``torch.sparse_csr`` tensor whose stored entries
are exactly the mask's active positions (a regrown weight that is still 0 is stored as an explicit
0, so the stored pattern *is* the mask); every other tensor (biases, unmasked matrices, buffers)
stays dense. Nothing but torch is needed to read it (``torch.load(path, weights_only=True)``)::

    dense = {k: v.to_dense().reshape(shapes.get(k, v.shape)) if v.layout == torch.sparse_csr else v
             for k, v in state_dict.items()}

A 2-D weight of shape (rows, cols) is stored as is; a weight with more dimensions is stored as its
(shape[0], prod(shape[1:])) view and its shape is recorded (``info[key]["shape"]``).

Size (float32 weights, N = rows · cols, density d): CSR with int32 indices costs
4·d·N (values) + 4·d·N (column indices) + 4·(rows + 1) (row pointers) bytes, i.e. about 8·d·N
against the dense 4·N, so it is smaller whenever d < 0.5 (at d = 0.33 about 0.66 × dense). COO
with int64 indices would cost 4·d·N + 16·d·N = 20·d·N, larger than dense for any d > 0.2; CSR
with torch's default int64 indices 12·d·N, larger than dense for d > 0.33. Hence CSR with int32
indices (int64 only when a tensor has 2³¹ or more stored entries or columns).
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from lsh_tune.errors import LSHUsageError

__all__ = ["SPARSE_CSR_FORMAT", "csr_from_mask", "dense_state_dict", "sparse_state_dict"]

#: ``format`` of a state dict written by :func:`sparse_state_dict` (and of the file around it).
SPARSE_CSR_FORMAT = "lsh_tune.sparse_csr_state_dict/2"
_INT32_MAX = 2**31 - 1


def csr_from_mask(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``weight``'s entries at ``mask``'s active positions as a CPU ``torch.sparse_csr`` tensor.

    Args:
        weight: a dense tensor with at least 2 dimensions, shape (rows, ...).
        mask: bool (or 0/1) tensor of ``weight``'s shape; True = stored.

    Returns:
        a (rows, prod(shape[1:])) sparse CSR tensor of ``weight``'s dtype with ``mask.sum()``
        stored entries, int32 row pointers and column indices (int64 beyond 2³¹ − 1).

    Raises:
        LSHUsageError: ``weight`` has fewer than 2 dimensions, or ``mask`` another shape.
    """
    if weight.dim() < 2:
        raise LSHUsageError(f"a sparse CSR export needs a weight with >= 2 dimensions; got shape {tuple(weight.shape)}")
    if tuple(mask.shape) != tuple(weight.shape):
        raise LSHUsageError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(weight.shape)}")
    w2 = weight.detach().cpu().reshape(weight.shape[0], -1)
    m2 = mask.detach().cpu().reshape(w2.shape).bool()
    rows, cols = m2.nonzero(as_tuple=True)  # row-major: sorted by row, then column
    crow = torch.zeros(w2.shape[0] + 1, dtype=torch.int64)
    crow[1:] = m2.sum(dim=1).cumsum(0)
    index = torch.int32 if max(rows.numel(), w2.shape[1]) <= _INT32_MAX else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow.to(index), cols.to(index), w2[rows, cols].clone(), size=tuple(w2.shape),
                                       check_invariants=True)


def sparse_state_dict(model: nn.Module, masks: dict[str, torch.Tensor]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """``model``'s state dict with every masked parameter as :func:`csr_from_mask` of its mask.

    Args:
        model: the model holding the weights to export (e.g. inside ``Trainer.evaluation_weights()``).
        masks: parameter name (as ``named_parameters`` gives it) → bool mask of that parameter's
            shape (:attr:`lsh_tune.sparse.Masking.masks`).

    Returns:
        (state dict: key → CPU tensor, CSR for masked keys, a detached dense copy otherwise;
        info: key of every CSR tensor → ``{"parameter": its mask's name, "shape": the weight's
        shape, "numel", "nnz": stored entries, "density": nnz / numel}``). Keys that alias one
        parameter (tied weights) share one CSR tensor, which ``torch.save`` writes once.

    Raises:
        LSHUsageError: a mask names no parameter of ``model``, or does not fit its shape.
    """
    params = dict(model.named_parameters())
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise LSHUsageError(f"masks {unknown} name no parameter of {type(model).__name__}; its parameters: "
                            f"{', '.join(params)}")
    owner = {id(params[name]): name for name in masks}
    csr: dict[str, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    info: dict[str, dict] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        name = owner.get(id(tensor))
        if name is None:
            state[key] = tensor.detach().cpu().clone()
            continue
        if name not in csr:
            csr[name] = csr_from_mask(tensor, masks[name])
        state[key] = csr[name]
        nnz, numel = int(csr[name].values().numel()), tensor.numel()
        info[key] = {"parameter": name, "shape": list(tensor.shape), "numel": numel, "nnz": nnz,
                     "density": nnz / numel}
    return state, info


def dense_state_dict(state: dict[str, torch.Tensor], info: dict[str, dict]
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Invert :func:`sparse_state_dict`: (dense state dict, parameter name → bool mask).

    Every CSR tensor becomes its dense tensor of shape ``info[key]["shape"]`` (zeros off the
    stored pattern) and its stored pattern the mask of ``info[key]["parameter"]``.

    Raises:
        LSHUsageError: a CSR tensor without its ``info`` entry, or whose stored entries do not fit
            the recorded shape — naming the key.
    """
    dense: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if tensor.layout != torch.sparse_csr:
            dense[key] = tensor
            continue
        entry = info.get(key)
        if not isinstance(entry, dict) or "shape" not in entry or "parameter" not in entry:
            raise LSHUsageError(f"state dict key {key!r} is a sparse CSR tensor without its entry in 'tensors' "
                                "(needs 'shape' and 'parameter')")
        shape = tuple(int(s) for s in entry["shape"])
        if len(shape) < 2 or (shape[0], math.prod(shape[1:])) != tuple(tensor.shape):
            raise LSHUsageError(f"state dict key {key!r}: CSR shape {tuple(tensor.shape)} does not fit the "
                                f"recorded shape {list(shape)}")
        dense[key] = tensor.to_dense().reshape(shape)
        masks.setdefault(str(entry["parameter"]), _pattern(tensor).reshape(shape))
    return dense, masks


def _pattern(csr: torch.Tensor) -> torch.Tensor:
    """The stored positions of a 2-D CSR tensor as a bool tensor of its shape."""
    crow, cols = csr.crow_indices().long(), csr.col_indices().long()
    rows = torch.repeat_interleave(torch.arange(csr.shape[0]), crow.diff())
    out = torch.zeros(tuple(csr.shape), dtype=torch.bool)
    out[rows, cols] = True
    return out
