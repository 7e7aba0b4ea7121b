"""One sparse training run from specs to files (``lsh-tune train-sparse``)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TextIO

import torch

from lsh_tune.data import load_corpus
from lsh_tune.models import ModelSpec, TrainSpec, build_model
from lsh_tune.sparse._config import SparseConfig
from lsh_tune.sparse._hook import build_sparse_hook
from lsh_tune.sparse._masking import derive_seed
from lsh_tune.train import Trainer
from lsh_tune.train.checkpoint import atomic_write_json
from lsh_tune.train.run import checkpoint_extras

__all__ = ["run_sparse_training", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")


def run_sparse_training(model_spec: ModelSpec, train_spec: TrainSpec, sparse: SparseConfig, *, corpus: str,
                        out: str | os.PathLike, data_dir: str | None = None, max_tokens: int | None = None,
                        seed: int = 0, device: str | None = "auto", resume: bool = False,
                        log: TextIO | None = None) -> dict:
    """Train one sparse candidate for ``train_spec.epochs`` epochs, checkpointing every epoch.

    Files in ``out``: ``checkpoint.pt`` (trainer state incl. masks, plus ``model_spec``,
    ``corpus``, ``vocab_size``, ``sparse_config`` and ``masks`` so ``lsh-tune ls --checkpoint``
    can rebuild the model), ``metrics.jsonl`` (one line per epoch, with the density) and
    ``result.json``. The model's initial weights come from ``torch.manual_seed`` of a seed
    derived from ``seed``; the masks from another.

    Returns:
        ``val_ppl``, ``test_ppl`` (averaged weights once NT-ASGD switched), ``density`` (active
        fraction of the masked weights), ``target_density``, ``per_tensor`` densities and the
        rest of :meth:`SparseTrainingHook.report`, plus the specs.
    """
    out = Path(out)
    data = load_corpus(corpus, data_dir, max_tokens=max_tokens)
    torch.manual_seed(derive_seed(seed, "model"))
    model = build_model(model_spec, len(data.vocab))
    hook = build_sparse_hook(model, sparse, seed=seed)
    trainer = Trainer(model, data, train_spec, seed=seed, device=device, hooks=[hook])
    ckpt = out / CHECKPOINT_NAME
    if resume:
        trainer.load(ckpt)
    extras = checkpoint_extras(model_spec, data, max_tokens)
    extras["sparse_config"] = sparse.to_dict()

    def save() -> None:
        masks = {k: m.detach().cpu().clone() for k, m in hook.masking.masks.items()}
        trainer.save(ckpt, **extras, masks=masks)

    def on_epoch(m: dict) -> None:
        save()
        m = {**m, "density": hook.masking.active() / hook.masking.total, "prune_steps": hook.masking.prune_steps}
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(m) + "\n")
        if log is not None:
            log.write(f"epoch {m['epoch']:>3}  train {m['train_loss']:.3f}  val ppl {m['val_ppl']:.2f}"
                      f"  density {m['density']:.4f}  ({m['epoch_time_s']:.1f}s)\n")
            log.flush()

    if not resume and trainer.epoch == 0:
        save()
    trainer.fit(callback=on_epoch)
    val, test = trainer.evaluate("valid"), trainer.evaluate("test")
    report = hook.report(trainer.model)
    result = {"model_spec": model_spec.to_dict(), "train_spec": train_spec.to_dict(), "corpus": data.name,
              "epochs": trainer.epoch, "val_loss": val, "test_loss": test, "val_ppl": _ppl(val),
              "test_ppl": _ppl(test), "checkpoint": str(ckpt), "seed": seed, "device": str(trainer.device),
              "asgd": trainer.averager is not None, **report}
    atomic_write_json(result, out / "result.json")
    return result
