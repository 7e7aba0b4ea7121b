"""Rebuild a model from a dense or sparse training checkpoint, for ``lsh-tune ls --checkpoint``.

A checkpoint is a ``torch.save`` dict with at least ``model_spec`` (``ModelSpec.to_dict()``),
``model`` (state dict), ``corpus`` (name) and ``vocab_size``; a sparse one may add ``masks``
(parameter name -> 0/1 tensor), which are multiplied into the weights.
"""
from __future__ import annotations

import os

import torch

from lsh_tune.errors import LSHUsageError
from lsh_tune.models import ModelSpec, RNNLanguageModel, build_model
from lsh_tune.train.checkpoint import read_checkpoint

__all__ = ["CHECKPOINT_KEYS", "load_checkpoint_model"]

CHECKPOINT_KEYS = ("model_spec", "model", "corpus", "vocab_size")


def load_checkpoint_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
                          ) -> tuple[RNNLanguageModel, dict]:
    """(model in eval mode, checkpoint dict) from ``path``.

    Raises:
        LSHUsageError: unreadable, corrupt or foreign file, missing keys, an unknown model, or a
            state dict (or masks) that does not fit the spec — one line naming the file.
    """
    ckpt = read_checkpoint(path, required=CHECKPOINT_KEYS, map_location=map_location)
    try:
        spec = ModelSpec.from_dict(ckpt["model_spec"])
        model = build_model(spec, int(ckpt["vocab_size"]))
    except LSHUsageError as e:
        raise LSHUsageError(f"checkpoint {str(path)!r} describes no model lsh_tune can build: {e}") from None
    except (TypeError, ValueError) as e:
        raise LSHUsageError(f"checkpoint {str(path)!r} has a malformed model_spec/vocab_size: {e}") from None
    try:
        model.load_state_dict(ckpt["model"])
        _apply_masks(model, ckpt.get("masks") or {})
    except (RuntimeError, TypeError, AttributeError) as e:
        reason = " ".join(str(e).split())[:400]
        raise LSHUsageError(f"checkpoint {str(path)!r} does not match its model_spec: {reason}") from None
    return model.eval(), ckpt


def _apply_masks(model: RNNLanguageModel, masks: dict) -> None:
    """Multiply each 0/1 mask into its parameter (a mask of another shape is a RuntimeError)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            if name in params:
                params[name].mul_(mask.to(params[name].dtype))
