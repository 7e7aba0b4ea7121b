"""Rebuild a model from a dense or sparse training checkpoint, for ``lsh-tune ls --checkpoint``.

A checkpoint is a ``torch.save`` dict with at least ``model_spec`` (``ModelSpec.to_dict()``),
``model`` (state dict), ``corpus`` (name) and ``vocab_size``; a sparse one may add ``masks``
(parameter name -> 0/1 tensor), which are multiplied into the weights.
"""
from __future__ import annotations

import os
import pickle

import torch

from lsh_tune.errors import LSHUsageError
from lsh_tune.models import ModelSpec, RNNLanguageModel, build_model

__all__ = ["CHECKPOINT_KEYS", "load_checkpoint_model"]

CHECKPOINT_KEYS = ("model_spec", "model", "corpus", "vocab_size")


def load_checkpoint_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
                          ) -> tuple[RNNLanguageModel, dict]:
    """(model in eval mode, checkpoint dict) from ``path``.

    Raises:
        LSHUsageError: unreadable file, missing keys, or a state dict that does not fit the spec.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise LSHUsageError(f"cannot read checkpoint {str(path)!r}: {e}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise LSHUsageError(f"checkpoint {str(path)!r} lacks keys {missing}; needs {list(CHECKPOINT_KEYS)}")
    spec = ModelSpec.from_dict(ckpt["model_spec"])
    model = build_model(spec, int(ckpt["vocab_size"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise LSHUsageError(f"checkpoint {str(path)!r} does not match its model_spec: {e}") from None
    masks = ckpt.get("masks") or {}
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            if name in params:
                params[name].mul_(mask.to(params[name].dtype))
    return model.eval(), ckpt
