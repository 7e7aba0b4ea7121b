"""Presets and models by name, through the registry (:mod:`lsh_tune.models.registry`).

Each model module declares its presets: ``paper`` reproduces the parameter counts of the paper's
Table A1 (66.0M stacked LSTM, 23.5M RHN on PTB, 35.0M AWD-LSTM-MoS on WikiText-2); ``small``
trains an epoch of full PTB in a few minutes on 2 CPU cores; ``tiny`` in seconds on a slice
(tests and the demo).
"""
from __future__ import annotations

from dataclasses import replace

from lsh_tune.errors import LSHUsageError, check_choice
from lsh_tune.models.base import RNNLanguageModel
from lsh_tune.models.registry import MODELS, PRESETS, get_model_entry
from lsh_tune.models.specs import ModelSpec, TrainSpec

__all__ = ["MODELS", "PRESETS", "ModelSpec", "TrainSpec", "get_preset", "build_model", "count_parameters",
           "with_overrides"]


def get_preset(model: str, preset: str) -> tuple[ModelSpec, TrainSpec]:
    """(ModelSpec, TrainSpec) for ``model`` in :data:`MODELS` and ``preset`` in :data:`PRESETS`."""
    entry = get_model_entry(model)
    check_choice("preset", preset, PRESETS)
    return entry.presets[preset]


def build_model(spec: ModelSpec, vocab_size: int) -> RNNLanguageModel:
    """Instantiate the ``nn.Module`` described by ``spec`` for a vocabulary of ``vocab_size``."""
    entry = get_model_entry(spec.model)
    if vocab_size < 2:
        raise LSHUsageError(f"vocab_size={vocab_size} must be at least 2")
    return entry.build(spec, vocab_size)


def count_parameters(model: RNNLanguageModel) -> dict:
    """Total and per-tensor parameter counts (tied tensors counted once)."""
    per = {name: int(p.numel()) for name, p in model.named_parameters()}
    return {"total": int(sum(per.values())), "per_tensor": per}


def with_overrides(spec, **kw):
    """``dataclasses.replace`` that ignores ``None`` values."""
    return replace(spec, **{k: v for k, v in kw.items() if v is not None})
