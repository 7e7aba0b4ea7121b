"""The model registry: what each architecture declares so that the rest of the package needs no list of models.

An architecture's module registers one :class:`ModelEntry` when it is imported: how a
:class:`~lsh_tune.models.ModelSpec` builds it, its ``tiny``/``small``/``paper`` presets, which
group (:data:`MASK_GROUPS`) each weight matrix belongs to for dynamic sparse training, and
optionally its closed-form Jacobian for the Lyapunov spectrum. ``lsh_tune.sparse`` and
``lsh_tune.lyapunov`` look a model up here (:func:`entry_for_model`); the CLI's ``--model``
choices are :data:`MODELS`.

Adding a model: subclass :class:`~lsh_tune.models.RNNLanguageModel` and call
``register_model(ModelEntry(name, cls, build, presets, mask_group))`` (``stepper`` is optional:
without one the spectrum uses autograd).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Callable, Iterator

from lsh_tune.errors import LSHTypeError, LSHUsageError, check_choice
from lsh_tune.models.base import RNNLanguageModel
from lsh_tune.models.specs import ModelSpec, TrainSpec

__all__ = ["MASK_GROUPS", "MODELS", "PRESETS", "ModelEntry", "StepperFactory", "entry_for_model",
           "get_model_entry", "mask_groups_by_name", "model_has_cell_state", "register_model", "unregister_model"]

#: Preset names every entry defines: the paper's Table A1, a few CPU minutes per PTB epoch, seconds.
PRESETS = ("paper", "small", "tiny")
#: Groups of weight matrices that dynamic sparse training can mask: ``embedding`` (the encoder),
#: ``input`` (input-to-hidden), ``recurrent`` (hidden-to-hidden), ``output`` (decoder and what
#: feeds it) and ``other`` (every matrix a model's ``mask_group`` leaves unnamed).
MASK_GROUPS = ("embedding", "input", "recurrent", "output", "other")

#: ``stepper(model, convention, dtype)`` -> a :data:`lsh_tune.lyapunov.jacobians.Stepper`, or
#: ``None`` where this instance has no closed form (the spectrum then uses autograd).
StepperFactory = Callable[[RNNLanguageModel, str, Any], Any]


@dataclass(frozen=True, eq=False)
class ModelEntry:
    """One registered architecture.

    Args:
        name: the ``--model`` name; every preset's ``ModelSpec.model`` equals it.
        cls: the model class. Instances of subclasses use this entry too (the nearest registered
            class in the MRO), its ``stepper`` only while they keep ``cls.step``.
        build: ``build(spec, vocab_size)`` -> a new model (``vocab_size >= 2`` is checked before).
        presets: ``{preset: (ModelSpec, TrainSpec)}`` for every name in :data:`PRESETS`.
        mask_group: ``mask_group(parameter_name)`` -> the group (:data:`MASK_GROUPS`) of a weight
            matrix, or ``None`` for ``other``; a tied tensor belongs to the groups of all its names.
        stepper: closed-form Jacobians (:data:`StepperFactory`); ``None``: autograd only.

    Raises:
        LSHTypeError: ``cls`` is not an RNNLanguageModel subclass or a preset is not a spec pair.
        LSHUsageError: an empty name, missing or unknown presets, or a preset of another model.
    """

    name: str
    cls: type
    build: Callable[[ModelSpec, int], RNNLanguageModel]
    presets: Mapping[str, tuple[ModelSpec, TrainSpec]]
    mask_group: Callable[[str], "str | None"]
    stepper: StepperFactory | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise LSHUsageError(f"model name {self.name!r} must be a non-empty string")
        if not (isinstance(self.cls, type) and issubclass(self.cls, RNNLanguageModel)):
            raise LSHTypeError(f"model {self.name!r}: cls={self.cls!r} must be a subclass of RNNLanguageModel")
        if sorted(self.presets) != sorted(PRESETS):
            raise LSHUsageError(f"model {self.name!r} defines presets {sorted(self.presets)}; "
                                f"exactly {', '.join(PRESETS)} are needed")
        for preset, specs in self.presets.items():
            if not (isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[0], ModelSpec)
                    and isinstance(specs[1], TrainSpec)):
                raise LSHTypeError(f"model {self.name!r}: preset {preset!r} must be a (ModelSpec, TrainSpec) pair")
            if specs[0].model != self.name:
                raise LSHUsageError(f"model {self.name!r}: preset {preset!r} describes model {specs[0].model!r}")
        object.__setattr__(self, "presets", MappingProxyType(dict(self.presets)))

    @cached_property
    def has_cell_state(self) -> bool:
        """Whether the model's state holds more than ``h`` per layer (an LSTM's cell state ``c``): what the
        ``hc`` state convention of the Lyapunov spectrum adds to ``h``. Read from the state of the
        ``tiny`` preset's model (built once, with the global RNG left as it was)."""
        import torch

        with torch.random.fork_rng(devices=[]), torch.no_grad():
            state = self.build(self.presets["tiny"][0], 2).init_state(1)
        return any(len(layer) > 1 for layer in state)


_REGISTRY: dict[str, ModelEntry] = {}


class _RegisteredNames(Sequence):
    """The registered model names in registration order: a live, read-only view of the registry."""

    def __getitem__(self, index):
        return tuple(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, _RegisteredNames)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


#: Names of the registered models (the built-ins: ``stacked_lstm``, ``rhn``, ``awd_lstm_mos``).
MODELS = _RegisteredNames()


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add ``entry``; its name becomes one of :data:`MODELS`. Returns ``entry``.

    Raises:
        LSHTypeError: ``entry`` is not a :class:`ModelEntry`.
        LSHUsageError: the name or the class is registered already.
    """
    if not isinstance(entry, ModelEntry):
        raise LSHTypeError(f"register_model needs a ModelEntry, got {type(entry).__name__}")
    if entry.name in _REGISTRY:
        raise LSHUsageError(f"model {entry.name!r} is registered already")
    for other in _REGISTRY.values():
        if other.cls is entry.cls:
            raise LSHUsageError(f"{entry.cls.__name__} is registered already, as {other.name!r}")
    _REGISTRY[entry.name] = entry
    return entry


def unregister_model(name: str) -> ModelEntry:
    """Remove the model ``name`` and return its entry (tests; a later :func:`register_model` may re-add it)."""
    check_choice("model", name, MODELS)
    return _REGISTRY.pop(name)


def get_model_entry(name: str) -> ModelEntry:
    """The entry of the model ``name``.

    Raises:
        LSHUsageError: ``name`` is not registered (the message lists :data:`MODELS`).
    """
    check_choice("model", name, MODELS)
    return _REGISTRY[name]


def model_has_cell_state(name: str) -> bool:
    """Whether the registered model ``name`` has a cell state (:attr:`ModelEntry.has_cell_state`).

    Raises:
        LSHUsageError: ``name`` is not registered.
    """
    return get_model_entry(name).has_cell_state


def entry_for_model(model: object) -> ModelEntry | None:
    """The entry of the nearest registered class in ``type(model).__mro__``; ``None`` if there is none."""
    by_cls = {entry.cls: entry for entry in _REGISTRY.values()}
    for klass in type(model).__mro__:
        if klass in by_cls:
            return by_cls[klass]
    return None


def mask_groups_by_name(modules: Mapping[str, str],
                        leaves: Mapping[str, str] | None = None) -> Callable[[str], "str | None"]:
    """A ``mask_group`` that reads parameter names.

    A parameter's top-level module (``encoder`` in ``encoder.weight``) is looked up in ``modules``
    first, then the start of its last name part (``weight_hh`` of ``rnns.0.weight_hh_l0``) in
    ``leaves``; ``None`` where neither matches.

    Raises:
        LSHUsageError: a group is not one of :data:`MASK_GROUPS`.
    """
    modules, leaves = dict(modules), dict(leaves or {})
    for group in (*modules.values(), *leaves.values()):
        check_choice("mask group", group, MASK_GROUPS)

    def mask_group(name: str) -> str | None:
        top, leaf = name.split(".", 1)[0], name.rsplit(".", 1)[-1]
        if top in modules:
            return modules[top]
        for prefix, group in leaves.items():
            if leaf.startswith(prefix):
                return group
        return None

    return mask_group
