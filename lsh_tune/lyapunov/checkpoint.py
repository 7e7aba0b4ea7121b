"""Rebuild a model from a checkpoint, for ``lsh-tune ls --checkpoint``, the search's
``reference_checkpoint`` and :meth:`lsh_tune.SearchResult.load_best_model`.

Three kinds of ``torch.save`` dict are read, from a local path or an object-store URI (read through
:class:`~lsh_tune.storage.Storage`):

* a sparse export (``format`` :data:`~lsh_tune.sparse.SPARSE_CSR_FORMAT`, the search's
  ``best_model.pt``): ``state_dict`` with every masked weight a ``torch.sparse_csr`` tensor whose
  stored pattern is its mask (:func:`lsh_tune.sparse.sparse_state_dict`), ``tensors`` (their
  shapes and densities), ``model_spec``, ``vocab_size``, ``corpus``;
* a training checkpoint, dense or sparse (and the search's former ``best_model.pt``, format
  ``lsh_tune.sparse_state_dict/1``): ``model_spec`` (``ModelSpec.to_dict()``), ``model`` (state
  dict), ``corpus`` (name), ``vocab_size``, optionally ``masks`` (parameter name → 0/1 tensor),
  which are multiplied into the weights.
"""
from __future__ import annotations

import os
import warnings

import torch

from lsh_tune.errors import LSHUsageError
from lsh_tune.models import ModelSpec, RNNLanguageModel, build_model
from lsh_tune.sparse import SPARSE_CSR_FORMAT, dense_state_dict
from lsh_tune.storage import Storage, is_uri
from lsh_tune.train.checkpoint import read_checkpoint

__all__ = ["CHECKPOINT_KEYS", "SPARSE_EXPORT_KEYS", "load_checkpoint_model"]

#: Keys of a training checkpoint (dense or sparse, and the former ``lsh_tune.sparse_state_dict/1`` export).
CHECKPOINT_KEYS = ("model_spec", "model", "corpus", "vocab_size")
#: Keys of a sparse export (format :data:`~lsh_tune.sparse.SPARSE_CSR_FORMAT`).
SPARSE_EXPORT_KEYS = ("format", "state_dict", "tensors", "model_spec", "corpus", "vocab_size")
#: Formats read as training checkpoints.
_LEGACY_FORMATS = (None, "lsh_tune.sparse_state_dict/1")


def load_checkpoint_model(location: str | os.PathLike, *, map_location: str | torch.device = "cpu"
                          ) -> tuple[RNNLanguageModel, dict]:
    """(model in eval mode with its masks applied, checkpoint dict) from ``location``.

    Args:
        location: a local path or an object-store URI (``s3://bucket/exp/best_model.pt``, query
            such as ``?endpoint_override=...`` kept), downloaded to a temporary file first.
        map_location: where the tensors are loaded (the model is built on CPU and loaded from them).

    Returns:
        the model (pruned weights exactly 0), and the checkpoint's dict: for a sparse export its
        metadata plus ``model`` (the dense state dict) and ``masks`` (parameter name → bool mask:
        the stored pattern), so every kind answers ``ckpt["model_spec"]``, ``ckpt["corpus"]``,
        ``ckpt["masks"]`` alike.

    Raises:
        LSHUsageError: missing, unreadable, corrupt or foreign file, an unknown ``format``, missing
            keys, an unknown model, or a state dict (or masks) that does not fit the spec — one
            line naming the file.
    """
    if not is_uri(location, "checkpoint"):
        return _load(location, str(location), map_location)
    store, name = Storage.split(location)
    try:
        with store.local_file(name) as path:
            return _load(path, str(location), map_location)
    except FileNotFoundError:
        raise LSHUsageError(f"checkpoint {str(location)!r} does not exist") from None
    except OSError as e:
        raise LSHUsageError(f"cannot read checkpoint {str(location)!r}: {' '.join(str(e).split())[:300]}") from None


def _load(path: str | os.PathLike, shown: str, map_location) -> tuple[RNNLanguageModel, dict]:
    """:func:`load_checkpoint_model` of the local file ``path`` (``shown`` in messages)."""
    try:
        with warnings.catch_warnings():  # torch's note that sparse CSR is a beta feature, on every CSR tensor read
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            ckpt = read_checkpoint(path, map_location=map_location)
    except LSHUsageError as e:
        raise LSHUsageError(str(e).replace(repr(str(path)), repr(shown))) from None
    fmt = ckpt.get("format")
    if fmt == SPARSE_CSR_FORMAT:
        _require(ckpt, SPARSE_EXPORT_KEYS, shown)
        try:
            dense, masks = dense_state_dict(ckpt["state_dict"], ckpt["tensors"])
        except LSHUsageError as e:
            raise LSHUsageError(f"checkpoint {shown!r}: {e}") from None
        ckpt = {**{k: v for k, v in ckpt.items() if k != "state_dict"}, "model": dense, "masks": masks}
    elif fmt in _LEGACY_FORMATS:
        _require(ckpt, CHECKPOINT_KEYS, shown)
    else:
        raise LSHUsageError(f"checkpoint {shown!r} has format={fmt!r}, which this lsh_tune does not read "
                            f"(it reads {SPARSE_CSR_FORMAT!r}, {_LEGACY_FORMATS[1]!r} and training checkpoints)")
    try:
        spec = ModelSpec.from_dict(ckpt["model_spec"])
        model = build_model(spec, int(ckpt["vocab_size"]))
    except LSHUsageError as e:
        raise LSHUsageError(f"checkpoint {shown!r} describes no model lsh_tune can build: {e}") from None
    except (TypeError, ValueError) as e:
        raise LSHUsageError(f"checkpoint {shown!r} has a malformed model_spec/vocab_size: {e}") from None
    try:
        model.load_state_dict(ckpt["model"])
        _apply_masks(model, ckpt.get("masks") or {})
    except (RuntimeError, TypeError, AttributeError) as e:
        reason = " ".join(str(e).split())[:400]
        raise LSHUsageError(f"checkpoint {shown!r} does not match its model_spec: {reason}") from None
    return model.eval(), ckpt


def _require(ckpt: dict, keys: tuple[str, ...], shown: str) -> None:
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise LSHUsageError(f"checkpoint {shown!r} lacks keys {missing}: not an lsh_tune checkpoint of "
                            f"this kind (needs {list(keys)})")


def _apply_masks(model: RNNLanguageModel, masks: dict) -> None:
    """Multiply each 0/1 mask into its parameter (a mask of another shape is a RuntimeError)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            if name in params:
                params[name].mul_(mask.to(params[name].dtype))
