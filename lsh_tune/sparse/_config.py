"""Configuration of dynamic sparse training: mode names and the validated :class:`SparseConfig`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lsh_tune.errors import LSHUsageError, check_choice, check_int, check_range
from lsh_tune.models import MASK_GROUPS

__all__ = ["DEATH_MODES", "GROWTH_MODES", "MASK_GROUPS", "REDISTRIBUTION_MODES", "SPARSE_INITS",
           "SparseConfig", "DEATH_RATE_FLOOR"]

SPARSE_INITS = ("uniform", "ER")
#: The paper's four, then ``SET_paper`` (SET's own rule for the negatives; not in the default search space).
DEATH_MODES = ("magnitude", "SET", "threshold", "global_magnitude", "SET_paper")
GROWTH_MODES = ("random", "momentum", "gradient")
REDISTRIBUTION_MODES = ("magnitude", "nonzeros", "momentum", "none")
# MASK_GROUPS (re-exported from lsh_tune.models.registry): the groups ``masked`` chooses from; each
# model's registry entry puts its weight matrices in them (see lsh_tune.sparse.tensor_groups).
#: The cosine decay of the death rate ends at this value (Selfish-RNN).
DEATH_RATE_FLOOR = 0.005


@dataclass(frozen=True)
class SparseConfig:
    """One dynamic-sparse-training candidate (Selfish-RNN's methodological choices).

    Args:
        sparsity: fraction s of the masked weights that are zero, in (0, 1); the density is
            d = 1 − s and the number of active weights is ``round(d · N)`` over the N masked
            elements, kept exactly at initialization and after every prune-and-regrow step.
        sparse_init: ``uniform`` (same density in every tensor) or ``ER`` (Erdős–Rényi).
        death: prune criterion, one of :data:`DEATH_MODES`.
        growth: regrowth criterion, one of :data:`GROWTH_MODES`.
        redistribution: how the regrowth is split over tensors, one of :data:`REDISTRIBUTION_MODES`.
        death_rate: initial death (prune) rate p₀ in (0, 1); it decays with a cosine over all
            training steps down to :data:`DEATH_RATE_FLOOR`.
        prune_interval_epochs: prune and regrow after every this many epochs (≥ 1).
        init_scale: multiply the surviving initial weights of each tensor by 1/√(its density) so
            that a sparse layer starts with the same pre-activation variance as the dense one.
            Default ``True``: without it, sparse ``tiny``/``small`` models at density ≈ 0.33 stay
            on the unigram plateau for several epochs (see ``docs``/reference facts). Selfish-RNN
            itself does not rescale; pass ``False`` to follow it literally.
        mask_gradients: zero the gradient of inactive weights during backward, so that the
            trainer's gradient-norm clipping sees only the sparse network's gradient. Default
            ``False``, as Selfish-RNN (which clips the dense gradient); on the ``tiny`` stacked
            LSTM at sparsity 0.67 (60k PTB tokens, 3 epochs) ``True`` did not help (val ppl 704
            vs 662), so it stays an opt-in.
        masked: which groups of weight matrices are masked (subset of :data:`MASK_GROUPS`);
            biases are never masked.
        momentum_beta: decay β of the gradient moving average ``m ← β m + (1 − β) g`` used by
            the ``momentum`` growth/redistribution modes when the optimizer keeps no momentum.
        threshold_init: starting value τ₀ of the adaptive threshold of the ``threshold`` death mode.

    Raises:
        LSHUsageError: any value outside its allowed set or range (the message lists them).

    Example:
        >>> SparseConfig(0.67, "ER", "magnitude", "random", "nonzeros", 0.7).density
        0.32999999999999996
    """

    sparsity: float
    sparse_init: str = "uniform"
    death: str = "magnitude"
    growth: str = "random"
    redistribution: str = "none"
    death_rate: float = 0.5
    prune_interval_epochs: int = 1
    init_scale: bool = True
    mask_gradients: bool = False
    masked: tuple[str, ...] = MASK_GROUPS
    momentum_beta: float = 0.9
    threshold_init: float = 1e-3

    def __post_init__(self) -> None:
        check_range("sparsity", self.sparsity, 0.0, 1.0, low_open=True, high_open=True)
        check_choice("sparse_init", self.sparse_init, SPARSE_INITS)
        check_choice("death", self.death, DEATH_MODES)
        check_choice("growth", self.growth, GROWTH_MODES)
        check_choice("redistribution", self.redistribution, REDISTRIBUTION_MODES)
        check_range("death_rate", self.death_rate, 0.0, 1.0, low_open=True, high_open=True)
        check_range("momentum_beta", self.momentum_beta, 0.0, 1.0, high_open=True)
        check_range("threshold_init", self.threshold_init, 0.0, None, low_open=True)
        check_int("prune_interval_epochs", self.prune_interval_epochs, 1)
        for flag in ("init_scale", "mask_gradients"):
            if not isinstance(getattr(self, flag), bool):
                raise LSHUsageError(f"{flag}={getattr(self, flag)!r} must be true or false")
        masked = (self.masked,) if isinstance(self.masked, str) else tuple(self.masked)
        if not masked:
            raise LSHUsageError(f"masked=() is empty; choose one or more of: {', '.join(MASK_GROUPS)}")
        for g in masked:
            check_choice("masked", g, MASK_GROUPS)
        object.__setattr__(self, "masked", tuple(g for g in MASK_GROUPS if g in masked))
        object.__setattr__(self, "sparsity", float(self.sparsity))
        object.__setattr__(self, "death_rate", float(self.death_rate))

    @property
    def density(self) -> float:
        """Target density d = 1 − sparsity."""
        return 1.0 - self.sparsity

    @property
    def needs_momentum(self) -> bool:
        """Whether a momentum estimate is needed (momentum growth or redistribution)."""
        return self.growth == "momentum" or self.redistribution == "momentum"

    def to_dict(self) -> dict:
        """JSON-serialisable form (``masked`` as a list)."""
        d = asdict(self)
        d["masked"] = list(self.masked)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SparseConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`LSHUsageError`."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise LSHUsageError(f"unknown SparseConfig keys {unknown}; allowed: "
                                f"{', '.join(cls.__dataclass_fields__)}")
        d = dict(d)
        if "masked" in d and not isinstance(d["masked"], str):
            d["masked"] = tuple(d["masked"])
        return cls(**d)

