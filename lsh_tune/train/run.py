"""One training run from specs to files: ``train-dense``, and ``train-sparse`` through a :class:`RunExtension`."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence, TextIO

from torch import nn

from lsh_tune.data import load_corpus
from lsh_tune.models import ModelSpec, TrainSpec, build_model
from lsh_tune.errors import LSHUsageError
from lsh_tune.train.checkpoint import atomic_write_json, read_checkpoint
from lsh_tune.train.trainer import Trainer, TrainingHook, perplexity, seed_everything

__all__ = ["CHECKPOINT_NAME", "RESUME_MAY_CHANGE", "run_training", "check_resume", "checkpoint_extras",
           "differing_options", "RunExtension"]

#: The checkpoint file of a run directory (beside ``metrics.jsonl`` and ``result.json``).
CHECKPOINT_NAME = "checkpoint.pt"
#: The :class:`TrainSpec` fields a resumed run may change (it may train for more epochs).
RESUME_MAY_CHANGE = ("epochs",)


def checkpoint_extras(model_spec: ModelSpec, corpus, max_tokens: int | None) -> dict:
    """Keys stored next to the trainer state so a checkpoint can rebuild its model alone."""
    return {"model_spec": model_spec.to_dict(), "corpus": corpus.name, "corpus_dir": str(corpus.directory),
            "max_tokens": max_tokens, "vocab_size": len(corpus.vocab)}


class RunExtension:
    """What a run adds to plain training; the base class adds nothing (``train-dense``).

    The sparse run (:func:`lsh_tune.train_sparse.run_sparse_training`) is one: it attaches its
    hook to the freshly built model, stores the masks with every checkpoint, logs the density per
    epoch and reports the per-tensor densities.
    """

    def attach(self, model: nn.Module) -> Sequence[TrainingHook]:
        """Training hooks for ``model`` (called once, after the model is built, before training)."""
        return ()

    def checkpoint_extras(self) -> dict:
        """Keys saved with every checkpoint (read at save time)."""
        return {}

    def epoch_metrics(self) -> dict:
        """Keys added to each epoch's ``metrics.jsonl`` line (``density`` is also logged)."""
        return {}

    def result(self, model: nn.Module) -> dict:
        """Keys added to ``result.json`` after the last epoch."""
        return {}

    def resume_problems(self, saved: dict) -> list[str]:
        """How the checkpoint ``saved`` contradicts this run's extension (``[]``: it can be resumed)."""
        if saved.get("sparse_config") is not None:
            return ["it is a sparse checkpoint (train-sparse); this run is dense (train-dense)"]
        return []


def differing_options(saved: dict, given: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """``--flag value (checkpoint: old)`` for each key of ``given`` that ``saved`` holds with another value."""
    return [f"--{k.replace('_', '-')} {given[k]!r} (checkpoint: {saved.get(k)!r})"
            for k in given if k not in skip and k in saved and saved[k] != given[k]]


def _append_line(path: Path, line: str) -> None:
    """Append ``line`` in one write; after a torn last line (a crash mid-write) start on a new line."""
    with open(path, "ab+") as f:
        torn = False
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        f.write((("\n" if torn else "") + line + "\n").encode("utf-8"))


def check_resume(saved: dict, path, *, model_spec: ModelSpec, train_spec: TrainSpec, corpus, max_tokens: int | None,
                 extension: RunExtension) -> None:
    """Refuse to resume checkpoint ``saved`` (read from ``path``) with settings that contradict it.

    It must hold the same architecture, vocabulary, corpus slice and training settings (only
    :data:`RESUME_MAY_CHANGE` may differ) and be of the same kind (dense/sparse, same sparse config).

    Raises:
        LSHUsageError: naming every contradicting option and its saved value.
    """
    problems = []
    if saved.get("model_spec") != model_spec.to_dict():
        problems += ["its model differs: " + ", ".join(differing_options(saved["model_spec"], model_spec.to_dict()))
                     if isinstance(saved.get("model_spec"), dict) else "it holds no model_spec"]
    if saved.get("vocab_size") != len(corpus.vocab):
        problems.append(f"the corpus {corpus.name!r} has {len(corpus.vocab)} words, the checkpoint's model "
                        f"{saved.get('vocab_size')!r} (another corpus or vocabulary)")
    problems += differing_options(saved, {"max_tokens": max_tokens})
    if isinstance(saved.get("train_spec"), dict):
        problems += differing_options(saved["train_spec"], train_spec.to_dict(), skip=RESUME_MAY_CHANGE)
    problems += extension.resume_problems(saved)
    if problems:
        raise LSHUsageError(f"--resume cannot continue {str(path)!r}: {'; '.join(problems)}. Give the settings it "
                            "was started with (only --epochs may change) or another --out")


def run_training(model_spec: ModelSpec, train_spec: TrainSpec, *, corpus: str, out: str | os.PathLike,
                 data_dir: str | None = None, max_tokens: int | None = None, seed: int = 0,
                 device: str | None = "auto", resume: bool = False, hooks: Sequence[TrainingHook] = (),
                 log: TextIO | None = None, extension: RunExtension | None = None,
                 model_seed: int | None = None) -> dict:
    """Train to ``train_spec.epochs`` epochs, writing :data:`CHECKPOINT_NAME` after every epoch.

    ``metrics.jsonl`` gets one line per epoch; ``result.json`` the final validation and test
    perplexities (of the averaged weights once NT-ASGD switched). With ``resume`` the run
    continues from ``out/checkpoint.pt``; no finished epoch is trained again. The initial weights
    come from ``model_seed`` (default ``seed``), seeded before the model is built; ``extension``
    adds hooks, checkpoint keys, metrics and result keys (:class:`RunExtension`). Returns the
    result dict.
    """
    out = Path(out)
    data = load_corpus(corpus, data_dir, max_tokens=max_tokens)
    seed_everything(seed if model_seed is None else model_seed)
    model = build_model(model_spec, len(data.vocab))
    ext = extension or RunExtension()
    trainer = Trainer(model, data, train_spec, seed=seed, device=device, hooks=[*ext.attach(model), *hooks])
    ckpt = out / CHECKPOINT_NAME
    if resume:
        saved = read_checkpoint(ckpt, required=("model_spec", "vocab_size", "trainer"))
        check_resume(saved, ckpt, model_spec=model_spec, train_spec=train_spec, corpus=data, max_tokens=max_tokens,
                     extension=ext)
        trainer.load(ckpt, saved=saved)
    extras = checkpoint_extras(model_spec, data, max_tokens)
    metrics_path = out / "metrics.jsonl"

    def save() -> None:
        trainer.save(ckpt, **extras, **ext.checkpoint_extras())

    def on_epoch(m: dict) -> None:
        save()
        m = {**m, **ext.epoch_metrics()}
        _append_line(metrics_path, json.dumps(m))
        if log is not None:
            density = f"  density {m['density']:.4f}" if "density" in m else ""
            log.write(f"epoch {m['epoch']:>3}  train {m['train_loss']:.3f}  val ppl {m['val_ppl']:.2f}"
                      f"{density}  ({m['epoch_time_s']:.1f}s)\n")
            log.flush()

    if not resume and trainer.epoch == 0:
        save()  # epoch-0 state: resumable before the first epoch ends
    trainer.fit(callback=on_epoch)
    val = trainer.evaluate("valid")
    test = trainer.evaluate("test")
    result = {"model_spec": model_spec.to_dict(), "train_spec": train_spec.to_dict(), "corpus": data.name,
              "epochs": trainer.epoch, "val_loss": val, "test_loss": test, "val_ppl": perplexity(val),
              "test_ppl": perplexity(test), "checkpoint": str(ckpt), "seed": seed, "device": str(trainer.device),
              "asgd": trainer.averager is not None, **ext.result(trainer.model)}
    atomic_write_json(result, out / "result.json")
    return result
