"""The two specs a run is built from: :class:`ModelSpec` (architecture) and :class:`TrainSpec` (optimisation)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ModelSpec", "TrainSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture. ``hidden`` lists the hidden size of each recurrent layer (RHN: one layer).

    ``model`` is a registered name (:data:`lsh_tune.models.MODELS`); ``dropouts`` = (word-level,
    embedding, hidden, output) as in Table A1.
    """

    model: str
    emb: int
    hidden: tuple[int, ...]
    tied: bool = False
    dropouts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    depth: int = 1            # RHN recurrence depth
    n_experts: int = 0        # MoS experts
    dropoutl: float = 0.0     # MoS latent dropout
    wdrop: float = 0.0        # AWD weight-drop on hidden-to-hidden matrices

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["dropouts"] = list(self.dropouts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        d["dropouts"] = tuple(d["dropouts"])
        return cls(**d)


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation: SGD with clipping, NT-ASGD switch after ``non_mono`` non-improving evaluations.

    ``lr`` is the SGD learning rate, ``clip`` the gradient-norm clip, ``bptt`` the truncation
    length in tokens, ``variable_bptt`` the AWD random-length windows.
    """

    lr: float
    batch_size: int
    bptt: int
    clip: float = 0.25
    epochs: int = 1
    non_mono: int = 5
    weight_decay: float = 1.2e-6
    eval_batch_size: int = 10
    variable_bptt: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
