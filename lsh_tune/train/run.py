"""One training run from specs to files: used by ``train-dense`` and the search's dense reference."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence, TextIO

from lsh_tune.data import load_corpus
from lsh_tune.models import ModelSpec, TrainSpec, build_model
from lsh_tune.train.checkpoint import atomic_write_json
from lsh_tune.train.trainer import Trainer, TrainingHook, seed_everything

__all__ = ["run_training", "checkpoint_extras"]


def checkpoint_extras(model_spec: ModelSpec, corpus, max_tokens: int | None) -> dict:
    """Keys stored next to the trainer state so a checkpoint can rebuild its model alone."""
    return {"model_spec": model_spec.to_dict(), "corpus": corpus.name, "corpus_dir": str(corpus.directory),
            "max_tokens": max_tokens, "vocab_size": len(corpus.vocab)}


def run_training(model_spec: ModelSpec, train_spec: TrainSpec, *, corpus: str, out: str | os.PathLike,
                 data_dir: str | None = None, max_tokens: int | None = None, seed: int = 0,
                 device: str | None = "auto", resume: bool = False, hooks: Sequence[TrainingHook] = (),
                 log: TextIO | None = None) -> dict:
    """Train to ``train_spec.epochs`` epochs, writing ``checkpoint.pt`` after every epoch.

    ``metrics.jsonl`` gets one line per epoch; ``result.json`` the final validation and test
    perplexities. With ``resume`` the run continues from ``out/checkpoint.pt``; no finished
    epoch is trained again. Returns the result dict.
    """
    out = Path(out)
    data = load_corpus(corpus, data_dir, max_tokens=max_tokens)
    seed_everything(seed)  # the initial weights come from the seed too
    model = build_model(model_spec, len(data.vocab))
    trainer = Trainer(model, data, train_spec, seed=seed, device=device, hooks=hooks)
    ckpt = out / "checkpoint.pt"
    if resume:
        trainer.load(ckpt)
    extras = checkpoint_extras(model_spec, data, max_tokens)
    metrics_path = out / "metrics.jsonl"

    def on_epoch(m: dict) -> None:
        trainer.save(ckpt, **extras)
        with open(metrics_path, "a") as f:
            f.write(json.dumps(m) + "\n")
        if log is not None:
            log.write(f"epoch {m['epoch']:>3}  train {m['train_loss']:.3f}  val ppl {m['val_ppl']:.2f}"
                      f"  ({m['epoch_time_s']:.1f}s)\n")
            log.flush()

    if not resume and trainer.epoch == 0:
        trainer.save(ckpt, **extras)  # epoch-0 state: resumable before the first epoch ends
    trainer.fit(callback=on_epoch)
    val = trainer.evaluate("valid")
    test = trainer.evaluate("test")
    result = {"model_spec": model_spec.to_dict(), "train_spec": train_spec.to_dict(), "corpus": data.name,
              "epochs": trainer.epoch, "val_loss": val, "test_loss": test,
              "val_ppl": math.exp(val), "test_ppl": math.exp(test), "checkpoint": str(ckpt), "seed": seed,
              "device": str(trainer.device)}
    atomic_write_json(result, out / "result.json")
    return result
