"""Pure prune (death), regrowth and redistribution rules on plain tensors.

Every function takes weights, bool masks (True = active weight) and counts, and returns bool
tensors of the weights to remove or add; nothing here touches a model or an optimizer. Ties in
a score are broken by flat index (the earlier element goes first), so results are exact and
reproducible.
"""
from __future__ import annotations

import math

import torch

from lsh_tune.sparse._config import DEATH_RATE_FLOOR

__all__ = ["allocate", "cosine_death_rate", "death_global_magnitude", "death_magnitude", "death_set",
           "death_threshold", "grow", "n_to_remove", "redistribution_shares"]


def n_to_remove(rate: float, active: int) -> int:
    """⌈rate · active⌉, at most ``active`` (Selfish-RNN's per-tensor removal count)."""
    return min(int(active), int(math.ceil(rate * active - 1e-9)))


def cosine_death_rate(step: int, total_steps: int, rate0: float, floor: float = DEATH_RATE_FLOOR) -> float:
    """Death rate after ``step`` of ``total_steps`` optimizer steps: cosine decay p₀ → floor.

    p(t) = floor + (p₀ − floor) · (1 + cos(π · min(t, T) / T)) / 2; p₀ ≤ floor stays constant.

    >>> round(cosine_death_rate(50, 100, 0.5), 4)
    0.2525
    """
    if rate0 <= floor or total_steps <= 0:
        return float(rate0)
    frac = min(max(step, 0), total_steps) / total_steps
    return floor + (rate0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


def _flat_pick(scores: torch.Tensor, where: torch.Tensor, n: int, *, largest: bool) -> torch.Tensor:
    """Flat indices of the ``n`` smallest (or largest) ``scores`` among True entries of ``where``."""
    idx = torch.nonzero(where.reshape(-1)).squeeze(1)
    if n <= 0 or idx.numel() == 0:
        return idx[:0]
    vals = scores.reshape(-1)[idx]
    order = torch.sort(vals, descending=largest, stable=True).indices
    return idx[order[:n]]


def _to_mask(like: torch.Tensor, flat_idx: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(like.numel(), dtype=torch.bool, device=like.device)
    out[flat_idx] = True
    return out.view(like.shape)


def death_magnitude(weight: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """Remove the ``n`` active weights of smallest |w| in one tensor.

    Args:
        weight: weights, any shape.
        mask: bool, same shape; True = active.
        n: how many to remove (at most the active count).

    Returns:
        bool tensor, True where a weight is removed (a subset of ``mask``).
    """
    return _to_mask(weight, _flat_pick(weight.abs(), mask, n, largest=False))


def death_set(weight: torch.Tensor, mask: torch.Tensor, n: int, *, negatives: str = "most_negative") -> torch.Tensor:
    """SET death: ⌈n/2⌉ of the smallest non-negative weights and ⌊n/2⌋ negative weights.

    ``negatives="most_negative"`` (death mode ``SET``) removes the largest-magnitude negatives, as
    sparse-momentum's ``magnitude_and_negativity_death`` that Selfish-RNN uses;
    ``negatives="closest_to_zero"`` (death mode ``SET_paper``) removes the negatives closest to
    zero, as the SET paper (Mocanu et al. 2018) does. Active weights that are exactly 0 (just
    regrown) count as non-negative and go first. If one side has too few weights the other side
    makes up the difference, so exactly ``n`` are removed.
    """
    if negatives not in ("most_negative", "closest_to_zero"):
        raise ValueError(f"negatives={negatives!r}; allowed: most_negative, closest_to_zero")
    n = min(n, int(mask.sum()))
    pos = mask & (weight >= 0)
    neg = mask & (weight < 0)
    k_pos = min(int(math.ceil(n / 2)), int(pos.sum()))
    k_neg = min(n - k_pos, int(neg.sum()))
    k_pos = n - k_neg
    removed = _flat_pick(weight, pos, k_pos, largest=False)          # smallest positives
    removed_neg = _flat_pick(weight, neg, k_neg, largest=negatives == "closest_to_zero")
    return _to_mask(weight, torch.cat([removed, removed_neg]))


def _active_abs(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
    """Concatenated |w| of the active weights, with (name, flat indices) segments."""
    vals, segs = [], []
    for name, w in weights.items():
        idx = torch.nonzero(masks[name].reshape(-1)).squeeze(1)
        vals.append(w.reshape(-1)[idx].abs().float().cpu())
        segs.append((name, idx))
    return torch.cat(vals), segs


def _split_removed(weights, segs, removed_flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, idx in segs:
        sel = removed_flat[start:start + idx.numel()].to(idx.device)
        out[name] = _to_mask(weights[name], idx[sel])
        start += idx.numel()
    return out


def death_global_magnitude(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                           n: int) -> dict[str, torch.Tensor]:
    """Remove the ``n`` active weights of smallest |w| over all tensors (one global threshold).

    Returns:
        name → bool tensor of removed weights.
    """
    vals, segs = _active_abs(weights, masks)
    removed = torch.zeros(vals.numel(), dtype=torch.bool)
    removed[torch.sort(vals, stable=True).indices[:max(n, 0)]] = True
    return _split_removed(weights, segs, removed)


def death_threshold(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], expected: int,
                    tau: float, *, tolerance: float = 0.02, max_iter: int = 60):
    """Remove every active weight with |w| < τ, τ adapted to remove about ``expected`` weights.

    Starting from the previous τ, τ is doubled (too few removed) or halved (too many) until the
    count brackets ``expected``, then bisected until the count is within ``tolerance · expected``
    (or ``max_iter`` is reached). The adapted τ is returned so the next step starts from it.

    Returns:
        (name → bool tensor of removed weights, the new τ).
    """
    vals, segs = _active_abs(weights, masks)
    lo = hi = None
    for _ in range(max_iter):
        count = int((vals < tau).sum())
        if abs(count - expected) <= tolerance * expected:
            break
        if count < expected:
            lo = tau
            tau = tau * 2.0 if hi is None else 0.5 * (lo + hi)
        else:
            hi = tau
            tau = tau * 0.5 if lo is None else 0.5 * (lo + hi)
    return _split_removed(weights, segs, vals < tau), float(tau)


def grow(mask: torch.Tensor, dropped: torch.Tensor, n: int, *, score: torch.Tensor | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose ``n`` inactive weights of one tensor to regrow.

    Candidates are the inactive weights that were not removed in this step; only if there are
    fewer than ``n`` of them are just-removed weights taken too (so drop and grow are disjoint
    whenever the layer has room). With ``score`` (``|momentum|`` or ``|gradient|``) the largest
    scores win; without it the choice is uniform (``random`` growth) using ``generator``.

    Args:
        mask: bool, True = active after the prune.
        dropped: bool, True = removed in this step.
        n: number to grow (at most the number of inactive weights).
        score: optional non-negative scores, same shape.
        generator: CPU ``torch.Generator`` for random growth.

    Returns:
        bool tensor, True where a weight is regrown (disjoint from ``mask``).
    """
    inactive = ~mask
    first = inactive & ~dropped
    picked = _pick_grow(first, n, score, generator)
    rest = n - picked.numel()
    if rest > 0:
        picked = torch.cat([picked, _pick_grow(inactive & dropped, rest, score, generator)])
    return _to_mask(mask, picked)


def _pick_grow(where: torch.Tensor, n: int, score, generator) -> torch.Tensor:
    if score is not None:
        return _flat_pick(score, where, n, largest=True)
    idx = torch.nonzero(where.reshape(-1)).squeeze(1)
    perm = torch.randperm(idx.numel(), generator=generator)[:max(n, 0)]
    return idx[perm.to(idx.device)]


def redistribution_shares(mode: str, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                          momenta: dict[str, torch.Tensor] | None = None) -> dict[str, float] | None:
    """Relative share of the regrowth of each tensor, from the masks before the prune.

    ``magnitude``: mean |w| of its active weights; ``nonzeros``: number of active weights;
    ``momentum``: mean |m| of its active weights; ``none``: ``None`` (each tensor regrows what it
    lost). Shares are not normalised.
    """
    if mode == "none":
        return None
    out = {}
    for name, w in weights.items():
        m = masks[name]
        active = int(m.sum())
        if mode == "nonzeros":
            out[name] = float(active)
        elif active == 0:
            out[name] = 0.0
        elif mode == "magnitude":
            out[name] = float(w[m].abs().mean())
        elif mode == "momentum":
            if momenta is None:
                raise ValueError("momentum redistribution needs momenta")
            out[name] = float(momenta[name][m].abs().mean())
        else:
            raise ValueError(f"redistribution={mode!r} is unknown")
    return out


def _share(value: float) -> float:
    """A usable share: negative, NaN and infinite ones (a diverged network's weights) count as 0."""
    value = float(value)
    return value if math.isfinite(value) and value > 0 else 0.0


def allocate(total: int, shares: dict[str, float], capacity: dict[str, int]) -> dict[str, int]:
    """Split ``total`` into integers ∝ ``shares``, each at most its ``capacity``; sum == total.

    Water filling: tensors whose proportional part would reach their capacity get exactly their
    capacity and the rest is re-split over the others; the final split rounds by largest
    remainder (ties: earlier name). If every remaining share is 0, the remainder is split in
    proportion to the free capacity. A NaN or infinite share (a diverged network) counts as 0.

    Raises:
        ValueError: ``total`` exceeds the summed capacity.
    """
    if total > sum(capacity.values()):
        raise ValueError(f"cannot place {total} weights into capacity {sum(capacity.values())}")
    alloc = {k: 0 for k in capacity}
    free = [k for k in capacity if capacity[k] > 0]
    remaining = int(total)
    while remaining > 0:
        weights = {k: _share(shares.get(k, 0.0)) for k in free}
        if sum(weights.values()) <= 0:
            weights = {k: float(capacity[k] - alloc[k]) for k in free}
        s = sum(weights.values())
        ideal = {k: remaining * weights[k] / s for k in free}
        full = [k for k in free if alloc[k] + ideal[k] >= capacity[k]]
        if full:
            for k in full:
                remaining -= capacity[k] - alloc[k]
                alloc[k] = capacity[k]
            free = [k for k in free if k not in full]
            continue
        floors = {k: int(math.floor(ideal[k])) for k in free}
        extra = remaining - sum(floors.values())
        order = sorted(free, key=lambda k: -(ideal[k] - floors[k]))
        for i, k in enumerate(order):
            alloc[k] += floors[k] + (1 if i < extra else 0)
        remaining = 0
    return alloc
