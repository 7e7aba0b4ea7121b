"""Which tensors are masked, and how the initial density is spread over them (uniform / ER)."""
from __future__ import annotations

import math

import torch
from torch import nn

from lsh_tune.errors import LSHUsageError
from lsh_tune.models import MASK_GROUPS, entry_for_model

__all__ = ["er_densities", "exact_counts", "tensor_groups", "masked_tensors", "target_count"]


def _group_of(mask_group, name: str) -> str:
    """Group (see ``MASK_GROUPS``) of one parameter name, by the model's declared ``mask_group`` (None: ``other``)."""
    group = None if mask_group is None else mask_group(name)
    if group is None:
        return "other"
    if group not in MASK_GROUPS:
        raise LSHUsageError(f"mask_group({name!r}) gave {group!r}; allowed: {', '.join(MASK_GROUPS)} or None")
    return group


def tensor_groups(model: nn.Module) -> dict[str, set[str]]:
    """Groups of every weight matrix (``dim >= 2``), keyed by its deduplicated parameter name.

    The groups come from the model's registry entry (``ModelEntry.mask_group``); every matrix of a
    module without one is ``other``. A tied tensor (``decoder.weight is encoder.weight``) appears
    once, under the name that ``named_parameters()`` reports (``encoder.weight``), and belongs to
    the groups of all its aliases (``embedding`` and ``output``).
    """
    entry = entry_for_model(model)
    mask_group = None if entry is None else entry.mask_group
    alias_groups: dict[int, set[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.dim() >= 2:
            alias_groups.setdefault(id(p), set()).add(_group_of(mask_group, name))
    return {name: alias_groups[id(p)] for name, p in model.named_parameters() if p.dim() >= 2}


def masked_tensors(model: nn.Module, groups: tuple[str, ...]) -> dict[str, nn.Parameter]:
    """The parameters to mask: weight matrices in any of ``groups``, in ``named_parameters`` order.

    Raises:
        LSHUsageError: no weight matrix of the model belongs to ``groups``.
    """
    wanted = set(groups)
    params = dict(model.named_parameters())
    out = {name: params[name] for name, g in tensor_groups(model).items() if g & wanted}
    if not out:
        raise LSHUsageError(f"masked={list(groups)} selects no weight matrix of {type(model).__name__}")
    return out


def target_count(total: int, density: float) -> int:
    """Number of active weights K = round(d · N) (at least 1)."""
    return max(1, int(round(density * total)))


def er_densities(shapes: dict[str, tuple[int, ...]], density: float) -> dict[str, float]:
    """Erdős–Rényi densities: d_l = min(1, ε · Σdims_l / Πdims_l) with ε set so Σ d_l n_l = d · N.

    For a matrix of shape (rows, cols) the raw density is (rows + cols) / (rows · cols). Tensors
    whose density would exceed 1 are made dense and ε is recomputed for the rest (repeated
    until no tensor exceeds 1), as in Selfish-RNN / RigL.

    Args:
        shapes: tensor name → shape.
        density: target global density d in (0, 1].

    Returns:
        name → density in (0, 1].
    """
    numel = {k: math.prod(s) for k, s in shapes.items()}
    raw = {k: sum(s) / numel[k] for k, s in shapes.items()}
    budget = density * sum(numel.values())
    dense: set[str] = set()
    while True:
        free = [k for k in shapes if k not in dense]
        left = budget - sum(numel[k] for k in dense)
        if not free:
            break
        eps = left / sum(raw[k] * numel[k] for k in free)
        over = [k for k in free if eps * raw[k] > 1.0]
        if not over:
            break
        dense.update(over)
    return {k: 1.0 if k in dense else eps * raw[k] for k in shapes}


def exact_counts(numels: dict[str, int], densities: dict[str, float], total: int) -> dict[str, int]:
    """Integer active counts k_l ≈ d_l n_l with Σ k_l == ``total`` exactly (largest remainder).

    Each k_l stays within [0, n_l]; ties in the remainders go to the earlier tensor.
    """
    cap = sum(numels.values())
    if not 0 <= total <= cap:
        raise ValueError(f"total={total} must be within [0, {cap}]")
    ideal = {k: min(float(numels[k]), densities[k] * numels[k]) for k in numels}
    scale = total / max(sum(ideal.values()), 1e-300)
    ideal = {k: min(float(numels[k]), v * scale) for k, v in ideal.items()}
    counts = {k: int(math.floor(v)) for k, v in ideal.items()}
    order = sorted(numels, key=lambda k: -(ideal[k] - counts[k]))
    i = 0
    while sum(counts.values()) < total:
        k = order[i % len(order)]
        if counts[k] < numels[k]:
            counts[k] += 1
        i += 1
    while sum(counts.values()) > total:  # only after float round-off
        k = max(counts, key=lambda n: counts[n] - ideal[n])
        counts[k] -= 1
    return counts


def random_mask(shape: torch.Size, k: int, generator: torch.Generator) -> torch.Tensor:
    """Bool mask of ``shape`` with exactly ``k`` True entries, uniformly placed (CPU generator)."""
    n = math.prod(shape)
    flat = torch.zeros(n, dtype=torch.bool)
    flat[torch.randperm(n, generator=generator)[:k]] = True
    return flat.view(shape)
