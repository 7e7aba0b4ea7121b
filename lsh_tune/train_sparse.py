"""One sparse training run from specs to files (``lsh-tune train-sparse``).

The driver that joins the run of :mod:`lsh_tune.train.run` and the sparse engine of
:mod:`lsh_tune.sparse`; it sits above both, so neither imports the other's run logic.
"""
from __future__ import annotations

import os
from typing import TextIO

from torch import nn

from lsh_tune.models import ModelSpec, TrainSpec
from lsh_tune.sparse import SparseConfig, SparseTrainingHook, build_sparse_hook, sparse_seed
from lsh_tune.train.run import RunExtension, differing_options, run_training

__all__ = ["run_sparse_training"]


class _SparseRun(RunExtension):
    """The sparse engine's part of a run: hook, masks in checkpoints, density, per-tensor report."""

    def __init__(self, sparse: SparseConfig, seed: int) -> None:
        self.sparse, self.seed = sparse, seed
        self.hook: SparseTrainingHook | None = None

    def attach(self, model: nn.Module):
        self.hook = build_sparse_hook(model, self.sparse, seed=self.seed)
        return [self.hook]

    def checkpoint_extras(self) -> dict:
        masks = {k: m.detach().cpu().clone() for k, m in self.hook.masking.masks.items()}
        return {"sparse_config": self.sparse.to_dict(), "masks": masks}

    def epoch_metrics(self) -> dict:
        masking = self.hook.masking
        return {"density": masking.active() / masking.total, "prune_steps": masking.prune_steps}

    def result(self, model: nn.Module) -> dict:
        return self.hook.report(model)

    def resume_problems(self, saved: dict) -> list[str]:
        old = saved.get("sparse_config")
        if old is None:
            return ["it is a dense checkpoint (train-dense); this run is sparse (train-sparse)"]
        return differing_options(old, self.sparse.to_dict())


def run_sparse_training(model_spec: ModelSpec, train_spec: TrainSpec, sparse: SparseConfig, *, corpus: str,
                        out: str | os.PathLike, data_dir: str | None = None, max_tokens: int | None = None,
                        seed: int = 0, device: str | None = "auto", resume: bool = False,
                        log: TextIO | None = None) -> dict:
    """Train one sparse candidate for ``train_spec.epochs`` epochs, checkpointing every epoch.

    Files in ``out``: ``checkpoint.pt`` (trainer state incl. masks, plus ``model_spec``, ``corpus``,
    ``vocab_size``, ``sparse_config`` and ``masks`` so ``lsh-tune ls --checkpoint`` can rebuild
    the model), ``metrics.jsonl`` (one line per epoch, with the density) and
    ``result.json``. The model's initial weights come from a seed derived from ``seed``; the
    masks from another.

    Returns:
        ``val_ppl``, ``test_ppl`` (averaged weights once NT-ASGD switched), ``density`` (active
        fraction of the masked weights), ``target_density``, ``per_tensor`` densities and the
        rest of :meth:`SparseTrainingHook.report`, plus the specs.
    """
    return run_training(model_spec, train_spec, corpus=corpus, out=out, data_dir=data_dir, max_tokens=max_tokens,
                        seed=seed, device=device, resume=resume, log=log, extension=_SparseRun(sparse, seed),
                        model_seed=sparse_seed(seed, "model"))
