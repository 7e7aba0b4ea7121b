"""The two specs a run is built from: :class:`ModelSpec` (architecture) and :class:`TrainSpec` (optimisation)."""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass

from lsh_tune.errors import LSHTypeError, LSHUsageError, check_bool, check_int, check_range

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

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise LSHUsageError(f"model={self.model!r} must be a model name")
        check_int("emb", self.emb, 1)
        if isinstance(self.hidden, (str, bytes)) or not hasattr(self.hidden, "__len__") or not self.hidden:
            raise LSHTypeError(f"hidden={self.hidden!r} must be a non-empty tuple of layer sizes")
        for size in self.hidden:
            check_int("hidden", size, 1)
        if isinstance(self.dropouts, (str, bytes)) or len(tuple(self.dropouts)) != 4:
            raise LSHTypeError(f"dropouts={self.dropouts!r} must be 4 rates (word, embedding, hidden, output)")
        for rate in self.dropouts:
            check_range("dropouts", rate, 0.0, 1.0, high_open=True)
        check_bool("tied", self.tied)
        check_int("depth", self.depth, 1)
        check_int("n_experts", self.n_experts, 0)
        check_range("dropoutl", self.dropoutl, 0.0, 1.0, high_open=True)
        check_range("wdrop", self.wdrop, 0.0, 1.0, high_open=True)
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "dropouts", tuple(self.dropouts))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["dropouts"] = list(self.dropouts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        """Inverse of :meth:`to_dict`.

        Raises:
            LSHUsageError: ``d`` is not such a dict (missing or unknown keys, bad values).
        """
        return cls(**_known_fields(cls, d))


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

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, None, low_open=True)
        check_int("batch_size", self.batch_size, 1)
        check_int("bptt", self.bptt, 2)
        check_range("clip", self.clip, 0.0, None)
        check_int("epochs", self.epochs, 0)
        check_int("non_mono", self.non_mono, 0)
        check_range("weight_decay", self.weight_decay, 0.0, None)
        check_int("eval_batch_size", self.eval_batch_size, 1)
        check_bool("variable_bptt", self.variable_bptt)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainSpec":
        """Inverse of :meth:`to_dict` (raises :class:`LSHUsageError` on missing or unknown keys)."""
        return cls(**_known_fields(cls, d))


def _known_fields(cls: type, d: object) -> dict:
    """``d`` as keyword arguments of the dataclass ``cls``, refusing non-dicts and unknown or missing keys."""
    if not isinstance(d, dict):
        raise LSHTypeError(f"{cls.__name__} must be given as a dict; got {type(d).__name__}")
    names = cls.__dataclass_fields__
    unknown = sorted(set(d) - set(names))
    required = [n for n, f in names.items() if f.default is MISSING and f.default_factory is MISSING]
    missing = [n for n in required if n not in d]
    if unknown or missing:
        raise LSHUsageError(f"{cls.__name__} keys: unknown {unknown}, missing {missing}; allowed: {', '.join(names)}")
    return dict(d)
