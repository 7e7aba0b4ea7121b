"""Masks over a model's weight matrices: sparse initialization, masking, prune-and-regrow."""
from __future__ import annotations

import math

import torch
from torch import nn

from lsh_tune.seeds import derive_seed
from lsh_tune.sparse import _modes
from lsh_tune.sparse._config import SparseConfig
from lsh_tune.sparse._layout import er_densities, exact_counts, masked_tensors, random_mask, target_count, \
    tensor_groups

__all__ = ["Masking", "sparse_seed"]


def sparse_seed(seed: int, purpose: str) -> int:
    """The seed of the sparse engine's draws for ``purpose`` (:func:`lsh_tune.seeds.derive_seed`)."""
    return derive_seed("lsh_tune.sparse", purpose, int(seed))


class Masking:
    """Bool masks (True = active) over the selected weight matrices of ``model``.

    The model stays an ordinary ``nn.Module``: masks live here, keyed by parameter name (fqn),
    and are applied by multiplying the weights in place. The number of active weights over all
    masked tensors is K = round(d · N) exactly, at initialization and after every
    :meth:`prune_and_regrow`.

    Args:
        model: the model to sparsify; its weights are masked (and rescaled if
            ``config.init_scale``) in place.
        config: the candidate.
        seed: seeds the ``torch.Generator`` of every random draw (initial masks, random growth).
    """

    def __init__(self, model: nn.Module, config: SparseConfig, *, seed: int = 0) -> None:
        self.config = config
        params = masked_tensors(model, config.masked)
        self.names = list(params)
        self.groups = {k: sorted(v) for k, v in tensor_groups(model).items()}
        self.shapes = {k: tuple(p.shape) for k, p in params.items()}
        self.numels = {k: p.numel() for k, p in params.items()}
        self.total = sum(self.numels.values())
        self.target = target_count(self.total, config.density)
        self.generator = torch.Generator().manual_seed(sparse_seed(seed, "masks"))
        self.init_densities = self._planned_densities()
        counts = exact_counts(self.numels, self.init_densities, self.target)
        self.masks = {k: random_mask(p.shape, counts[k], self.generator).to(p.device) for k, p in params.items()}
        self.tau = float(config.threshold_init)
        self.prune_steps = 0
        self._fmasks: dict[str, torch.Tensor] = {}
        self._init_weights(params, counts)

    # ------------------------------------------------------------------ initialization
    def _planned_densities(self) -> dict[str, float]:
        d = self.config.density
        if self.config.sparse_init == "uniform":
            return {k: d for k in self.names}
        return er_densities(self.shapes, d)

    @torch.no_grad()
    def _init_weights(self, params: dict[str, torch.Tensor], counts: dict[str, int]) -> None:
        for k, p in params.items():
            p.mul_(self.masks[k].to(p.dtype))
            if self.config.init_scale and counts[k] > 0:
                p.mul_(1.0 / math.sqrt(counts[k] / self.numels[k]))

    # ------------------------------------------------------------------ masking
    def params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The masked parameters of ``model``, by name (masks follow their device)."""
        named = dict(model.named_parameters())
        out = {k: named[k] for k in self.names}
        for k, p in out.items():
            if self.masks[k].device != p.device:
                self.masks[k] = self.masks[k].to(p.device)
                self._fmasks.pop(k, None)
        return out

    def _fmask(self, name: str, like: torch.Tensor) -> torch.Tensor:
        f = self._fmasks.get(name)
        if f is None or f.dtype != like.dtype or f.device != like.device:
            f = self.masks[name].to(device=like.device, dtype=like.dtype)
            self._fmasks[name] = f
        return f

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero every masked-out weight of ``model`` (in place)."""
        params = self.params(model)
        torch._foreach_mul_([p.data for p in params.values()],
                            [self._fmask(k, p) for k, p in params.items()])

    @torch.no_grad()
    def mask_buffers(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Zero the optimizer's per-weight buffers (e.g. SGD ``momentum_buffer``) under the mask."""
        for k, p in self.params(model).items():
            for v in optimizer.state.get(p, {}).values():
                if isinstance(v, torch.Tensor) and v.shape == p.shape:
                    v.mul_(self._fmask(k, v))

    # ------------------------------------------------------------------ prune and regrow
    def _death(self, weights: dict[str, torch.Tensor], rate: float) -> dict[str, torch.Tensor]:
        mode = self.config.death
        active = {k: int(self.masks[k].sum()) for k in self.names}
        if mode == "magnitude":
            return {k: _modes.death_magnitude(w, self.masks[k], _modes.n_to_remove(rate, active[k]))
                    for k, w in weights.items()}
        if mode in ("SET", "SET_paper"):
            negatives = "most_negative" if mode == "SET" else "closest_to_zero"
            return {k: _modes.death_set(w, self.masks[k], _modes.n_to_remove(rate, active[k]), negatives=negatives)
                    for k, w in weights.items()}
        expected = _modes.n_to_remove(rate, sum(active.values()))
        if mode == "global_magnitude":
            return _modes.death_global_magnitude(weights, self.masks, expected)
        removed, self.tau = _modes.death_threshold(weights, self.masks, expected, self.tau)
        return removed

    def _regrowth(self, weights, removed, after, momenta) -> dict[str, int]:
        shares = _modes.redistribution_shares(self.config.redistribution, weights, self.masks, momenta)
        lost = {k: int(removed[k].sum()) for k in self.names}
        if shares is None:
            return lost
        total = sum(lost.values())
        # Prefer weights that were inactive before the prune, so drop and grow stay disjoint;
        # only if they cannot hold the regrowth (density > 0.5) may just-removed weights return.
        capacity = {k: self.numels[k] - int(self.masks[k].sum()) for k in self.names}
        if sum(capacity.values()) < total:
            capacity = {k: self.numels[k] - int(after[k].sum()) for k in self.names}
        return _modes.allocate(total, shares, capacity)

    def _grow_scores(self, name: str, momenta, grads) -> torch.Tensor | None:
        if self.config.growth == "momentum":
            return momenta[name].abs()
        if self.config.growth == "gradient" and grads.get(name) is not None:
            return grads[name].abs()
        return None  # random growth (also gradient growth before any gradient exists)

    @torch.no_grad()
    def prune_and_regrow(self, model: nn.Module, death_rate: float, *,
                         momenta: dict[str, torch.Tensor] | None = None,
                         grads: dict[str, torch.Tensor | None] | None = None) -> dict[str, dict]:
        """One topology update: remove weights by ``config.death``, regrow as many by ``config.growth``.

        Removed weights are set to 0; regrown weights start at 0. The global active count is
        unchanged (K); per tensor, the regrowth follows ``config.redistribution``.

        Args:
            model: the model (its masked weights are edited in place).
            death_rate: the current death rate p (fraction of active weights to remove).
            momenta: name → gradient moving average (``momentum`` growth/redistribution).
            grads: name → current gradient or ``None`` (``gradient`` growth).

        Returns:
            name → ``{"removed": bool tensor, "grown": bool tensor}``.
        """
        if self.config.needs_momentum and momenta is None:
            raise ValueError(f"growth={self.config.growth!r}/redistribution={self.config.redistribution!r} "
                             "need momenta")
        params = self.params(model)
        weights = {k: p.detach() for k, p in params.items()}
        removed = self._death(weights, death_rate)
        after = {k: self.masks[k] & ~removed[k] for k in self.names}
        regrow = self._regrowth(weights, removed, after, momenta)
        out = {}
        for k in self.names:
            grown = _modes.grow(after[k], removed[k], regrow[k], score=self._grow_scores(k, momenta, grads or {}),
                                generator=self.generator)
            self.masks[k] = after[k] | grown
            self._fmasks.pop(k, None)
            out[k] = {"removed": removed[k], "grown": grown}
        self.apply(model)
        self.prune_steps += 1
        if self.active() != self.target:  # an internal invariant, not user input
            raise RuntimeError(f"active weights {self.active()} != target {self.target} after prune-and-regrow")
        return out

    # ------------------------------------------------------------------ reporting and state
    def active(self) -> int:
        """Number of active (unmasked) weights over all masked tensors."""
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def report(self, model: nn.Module | None = None) -> dict:
        """Densities: overall and per tensor (JSON-serialisable).

        ``density`` counts active mask entries (a regrown weight is active even while it is 0);
        with ``model``, ``nonzero`` counts the weights that are actually nonzero. ``unmasked``
        lists the weight matrices left dense by ``config.masked``.
        """
        per = {}
        nz = self.params(model) if model is not None else {}
        for k in self.names:
            a = int(self.masks[k].sum())
            per[k] = {"shape": list(self.shapes[k]), "numel": self.numels[k], "active": a,
                      "density": a / self.numels[k], "groups": self.groups[k]}
            if k in nz:
                per[k]["nonzero"] = int((nz[k] != 0).sum())
        return {"target_density": self.config.density, "density": self.active() / self.total,
                "active": self.active(), "target_active": self.target, "total": self.total,
                "masked": list(self.names), "unmasked": [k for k in self.groups if k not in self.masks],
                "per_tensor": per}

    def state_dict(self) -> dict:
        """Masks (bool, CPU), τ, prune count and the generator state; torch/JSON serialisable."""
        return {"config": self.config.to_dict(), "names": list(self.names),
                "masks": {k: m.detach().cpu().clone() for k, m in self.masks.items()},
                "tau": self.tau, "prune_steps": self.prune_steps,
                "generator": self.generator.get_state()}

    def load_state_dict(self, d: dict) -> None:
        """Restore :meth:`state_dict` output (the model and config must match)."""
        if list(d["names"]) != self.names:
            raise ValueError(f"mask names {d['names']} do not match the model's {self.names}")
        if d["config"] != self.config.to_dict():
            raise ValueError(f"saved sparse config {d['config']} != current {self.config.to_dict()}")
        for k in self.names:
            self.masks[k] = d["masks"][k].to(device=self.masks[k].device, dtype=torch.bool).clone()
        self._fmasks.clear()
        self.tau = float(d["tau"])
        self.prune_steps = int(d["prune_steps"])
        self.generator.set_state(d["generator"])
