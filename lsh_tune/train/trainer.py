"""Epoch-by-epoch training of a language model: SGD, clipping, NT-ASGD, full-state checkpoints."""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from lsh_tune.data import Corpus, batchify, bptt_batches, check_corpus_size
from lsh_tune.errors import LSHUsageError
from lsh_tune.models import RNNLanguageModel, TrainSpec
from lsh_tune.train.averaging import WeightAverager
from lsh_tune.train.checkpoint import atomic_torch_save, read_checkpoint, resolve_device
from lsh_tune.train.graph_step import GraphStep, graph_step_wanted

__all__ = ["Trainer", "TrainingHook", "TrainingProgress", "perplexity", "seed_everything",
           "nt_asgd_should_switch"]


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stands, as hooks see it: a snapshot (read ``trainer.progress`` again later).

    Args:
        epoch: 1-based number of the current epoch: the one being trained, or in
            :meth:`TrainingHook.on_epoch_end` the one whose training batches just ended.
        max_epochs: planned number of epochs.
        step: optimizer steps taken so far.
        total_steps: planned optimizer steps (batches per epoch × max(``max_epochs``, 1)).
        averager: the NT-ASGD :class:`WeightAverager` once averaging has started, else ``None``.
    """

    epoch: int
    max_epochs: int
    step: int
    total_steps: int
    averager: WeightAverager | None = None


class TrainingHook:
    """Extension points of :class:`Trainer` (dynamic sparse training plugs in here).

    A hook reads the trainer through ``trainer.model``, ``trainer.optimizer`` and
    ``trainer.progress`` (:class:`TrainingProgress`) only. Hooks run in list order; their
    ``state_dict`` is saved in the trainer's checkpoint.
    """

    def on_train_begin(self, trainer: "Trainer") -> None:
        """Once, before the first step of a fresh run (not on resume)."""

    def after_optimizer_step(self, trainer: "Trainer") -> None:
        """Right after every ``optimizer.step()``, before the averager update."""

    def on_epoch_end(self, trainer: "Trainer") -> None:
        """After an epoch's training batches, before validation."""

    def graph_safe(self) -> bool:
        """Whether :meth:`after_optimizer_step` may be recorded in a CUDA graph
        (:mod:`lsh_tune.train.graph_step`): device work only, no host reads or Python decisions
        that change between steps, the same tensors every step (what changes them must change
        :meth:`graph_key`). Default: ``True`` only when the hook does not override it."""
        return type(self).after_optimizer_step is TrainingHook.after_optimizer_step

    def graph_key(self):
        """A hashable that changes whenever a recorded :meth:`after_optimizer_step` would be stale
        (e.g. a mask tensor replaced); the trainer then records its step again. Default ``None``."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def nt_asgd_should_switch(history: Sequence[float], val_loss: float, non_mono: int) -> bool:
    """NT-ASGD trigger (Merity et al.): ``val_loss`` is worse than the best of all but the last
    ``non_mono`` earlier evaluations in ``history``."""
    earlier = history[:len(history) - non_mono]
    return len(earlier) > 0 and val_loss > min(earlier)


#: The keys of :meth:`Trainer.state_dict` a checkpoint must hold to be loaded.
_STATE_KEYS = ("model", "optimizer", "averager", "trainer", "hooks", "rng")


@dataclass
class _State:
    epoch: int = 0            # completed epochs
    step: int = 0             # optimizer steps taken
    val_history: list = field(default_factory=list)  # validation losses (nats/token), one per epoch
    asgd_epoch: int | None = None  # epoch after which averaging started


#: ``LSH_COMPILE_CELL=0`` keeps the model's cell uncompiled wherever ``compile_cell`` is left to ``None``.
COMPILE_ENV = "LSH_COMPILE_CELL"


def _use_compiled_cell(model: RNNLanguageModel, compile_cell: bool | None, device: torch.device) -> bool:
    """Switch ``model`` to its compiled cell when asked (``True``) or by default (``None``: on CUDA)."""
    if compile_cell is False or (compile_cell is None and (device.type != "cuda"
                                                           or os.environ.get(COMPILE_ENV, "1") == "0")):
        return False
    if model.use_compiled_cell():
        return True
    if compile_cell:
        raise LSHUsageError(f"compile_cell=True: {type(model).__name__} has no compiled cell "
                            "(RHN has; use compile_cell=None for auto)")
    return False


class Trainer:
    """Train ``model`` on ``corpus`` with ``spec``; one call of :meth:`train_epoch` per epoch.

    Args:
        model: an :class:`~lsh_tune.models.RNNLanguageModel` (moved to ``device``).
        corpus: token ids of train/valid/test.
        spec: learning rate, batch size, BPTT, clip, epochs, NT-ASGD interval ``non_mono``.
        seed: seeds torch/numpy/python at construction (same seed → same run on CPU).
        device: ``None``/``"auto"`` (CUDA when visible), ``"cpu"``, ``"cuda:0"`` ...
        hooks: :class:`TrainingHook` objects (e.g. the sparse engine).
        max_epochs: planned number of epochs (defaults to ``spec.epochs``); sets ``total_steps``.
        momentum: SGD momentum (0 as in the AWD/Selfish-RNN recipes).
        cuda_graph: record the training step of full-length batches in a CUDA graph
            (:mod:`lsh_tune.train.graph_step`): ``None`` (auto: on CUDA with fixed BPTT and
            graph-safe hooks, unless ``LSH_CUDA_GRAPH=0``), ``True`` (refused where it cannot
            apply) or ``False``. ``graph_reason`` says why it is off.
        compile_cell: train with the model's ``torch.compile``'d cell where it has one (RHN:
            ``RNNLanguageModel.use_compiled_cell``): ``None`` (auto: on CUDA, unless
            ``LSH_COMPILE_CELL=0``), ``True`` (any device; refused for a model without one) or
            ``False``. ``compiled_cell`` says whether it is on.
    """

    def __init__(self, model: RNNLanguageModel, corpus: Corpus, spec: TrainSpec, *, seed: int = 0,
                 device: str | torch.device | None = None, hooks: Sequence[TrainingHook] = (),
                 max_epochs: int | None = None, momentum: float = 0.0, cuda_graph: bool | None = None,
                 compile_cell: bool | None = None) -> None:
        check_corpus_size(corpus, batch_size=spec.batch_size, eval_batch_size=spec.eval_batch_size)
        self.max_epochs = int(spec.epochs if max_epochs is None else max_epochs)
        if self.max_epochs < 0:
            raise LSHUsageError(f"epochs={self.max_epochs} must be >= 0")
        seed_everything(seed)
        self.seed = seed
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.corpus, self.spec, self.hooks = corpus, spec, list(hooks)
        self.train_data = batchify(corpus.train, spec.batch_size).to(self.device)
        self.valid_data = batchify(corpus.valid, spec.eval_batch_size).to(self.device)
        self.test_data = batchify(corpus.test, spec.eval_batch_size).to(self.device)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=momentum,
                                         weight_decay=spec.weight_decay)
        self.averager: WeightAverager | None = None
        self.bptt_rng = np.random.default_rng(seed)
        self.state = _State()
        self._began = False
        # Σ loss·seq_len of the epoch, float64 on the device, read once per epoch (a CUDA graph adds to it)
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._state_generation = 0   # bumped by load_state_dict: a recorded step is then stale
        use_graph, self.graph_reason = graph_step_wanted(cuda_graph, self.device, variable_bptt=spec.variable_bptt,
                                                         hooks=self.hooks)
        self.graph_step: GraphStep | None = GraphStep(self) if use_graph else None
        self.compiled_cell = _use_compiled_cell(self.model, compile_cell, self.device)

    # ------------------------------------------------------------------ properties
    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil((self.train_data.size(0) - 1) / self.spec.bptt)

    @property
    def total_steps(self) -> int:
        return self.batches_per_epoch * max(self.max_epochs, 1)

    @property
    def progress(self) -> TrainingProgress:
        """The hooks' view: current epoch (1-based), planned epochs, steps, planned steps, averager."""
        return TrainingProgress(epoch=self.state.epoch + 1, max_epochs=self.max_epochs, step=self.state.step,
                                total_steps=self.total_steps, averager=self.averager)

    # ------------------------------------------------------------------ training
    def _loss(self, log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(log_probs.reshape(-1, log_probs.size(-1)), targets.reshape(-1))

    def train_epoch(self) -> dict:
        """Train one epoch, run the epoch-end hooks, validate and apply the NT-ASGD rule.

        Returns ``epoch`` (1-based count of completed epochs), ``train_loss`` and ``val_loss``
        (mean NLL, nats/token), ``val_ppl``, ``lr``, ``asgd`` (averaging active) and
        ``epoch_time_s``.
        """
        if not self._began and self.state.step == 0:
            for h in self.hooks:
                h.on_train_begin(self)
        self._began = True
        t0 = time.perf_counter()
        self.model.train()
        state = self.model.init_state(self.spec.batch_size)
        # Σ loss·seq_len in float64 on the model's device, read once per epoch: no host-device
        # synchronisation per batch (the same float64 sums as Python floats: bit-identical on CPU)
        self._loss_sum.zero_()
        count = 0
        graph = self.graph_step
        for x, y, seq_len in bptt_batches(self.train_data, self.spec.bptt, variable=self.spec.variable_bptt,
                                          rng=self.bptt_rng):
            lr = self.spec.lr * seq_len / self.spec.bptt
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            if graph is not None and graph.accepts(x, seq_len):
                state = graph.run(x, y, state, lr, self._eager_step)
            else:
                if graph is not None:
                    state = graph.release_state(state)
                state = self._eager_step(x, y, state)
            count += seq_len
        for h in self.hooks:
            h.on_epoch_end(self)
        val_loss = self.evaluate("valid")
        if self.averager is None and nt_asgd_should_switch(self.state.val_history, val_loss, self.spec.non_mono):
            self.averager = WeightAverager(self.model)
            self.state.asgd_epoch = self.state.epoch + 1
        self.state.val_history.append(val_loss)
        self.state.epoch += 1
        train_loss = self._loss_sum.item() / max(count, 1)
        return {"epoch": self.state.epoch, "train_loss": train_loss, "val_loss": val_loss,
                "val_ppl": perplexity(val_loss), "lr": self.spec.lr, "asgd": self.averager is not None,
                "epoch_time_s": time.perf_counter() - t0}

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor, state):
        """One training step on ``x``/``y`` (T, B), eagerly; returns the new state."""
        self.optimizer.zero_grad(set_to_none=True)
        return self._step_body(x, y, self.model.detach_state(state), x.size(0))

    def _step_body(self, x: torch.Tensor, y: torch.Tensor, state, seq_len: int, *, count_step: bool = True):
        """Forward, backward, clipping, SGD, hooks, averaging, loss sum: the step a CUDA graph
        records (no host synchronisation; gradients must be unset on entry). Returns the new state.

        ``count_step``: add the step to ``state.step`` before the hooks run (a recorded step is
        counted by the graph's caller on every replay instead)."""
        log_probs, state = self.model(x, state)
        loss = self._loss(log_probs, y)
        loss.backward()
        if self.spec.clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.clip)
        self.optimizer.step()
        if count_step:
            self.state.step += 1
        for h in self.hooks:
            h.after_optimizer_step(self)
        if self.averager is not None:
            self.averager.update(self.model)
        self._loss_sum.add_(loss.detach().double() * seq_len)
        return state

    def fit(self, epochs: int | None = None, callback=None) -> list[dict]:
        """Train until ``epochs`` (default ``max_epochs``) are completed; ``callback(metrics)`` per epoch."""
        target = self.max_epochs if epochs is None else int(epochs)
        out = []
        while self.state.epoch < target:
            m = self.train_epoch()
            out.append(m)
            if callback is not None:
                callback(m)
        return out

    @torch.no_grad()
    def evaluate(self, split: str = "valid") -> float:
        """Mean NLL (nats/token) on ``split``; with averaged weights once NT-ASGD has switched."""
        data = {"valid": self.valid_data, "test": self.test_data, "train": self.train_data}.get(split)
        if data is None:
            raise LSHUsageError(f"split={split!r} is not allowed; choose one of: train, valid, test")
        with self.evaluation_weights():
            return self._evaluate(data)

    def evaluation_weights(self) -> contextlib.AbstractContextManager:
        """Context in which ``model`` holds the weights it is evaluated with: the NT-ASGD averages
        once averaging has started (restored on exit), else the current weights."""
        if self.averager is None:
            return contextlib.nullcontext()
        return self.averager.swap_in(self.model)

    def _evaluate(self, data: torch.Tensor) -> float:
        was_training = self.model.training
        self.model.eval()
        state = self.model.init_state(data.size(1))
        total, count = torch.zeros((), dtype=torch.float64, device=data.device), 0  # read once, as in training
        for x, y, seq_len in bptt_batches(data, self.spec.bptt):
            log_probs, state = self.model(x, state)
            total += self._loss(log_probs, y).double() * seq_len
            count += seq_len
        self.model.train(was_training)
        return total.item() / max(count, 1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (on the same device type)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "averager": None if self.averager is None else self.averager.state_dict(),
            "trainer": {"epoch": self.state.epoch, "step": self.state.step,
                        "val_history": list(self.state.val_history), "asgd_epoch": self.state.asgd_epoch,
                        "seed": self.seed, "max_epochs": self.max_epochs},
            "hooks": [h.state_dict() for h in self.hooks],
            "rng": {"torch": torch.get_rng_state(), "numpy_bptt": self.bptt_rng.bit_generator.state,
                    "python": random.getstate(), "numpy_global": np.random.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "train_spec": self.spec.to_dict(),
        }

    def load_state_dict(self, d: dict) -> None:
        if len(d["hooks"]) != len(self.hooks):
            raise ValueError(f"it holds {len(d['hooks'])} training-hook state(s) and this run has {len(self.hooks)} "
                             "(a dense checkpoint has none, a sparse one the sparse engine's)")
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        if d["averager"] is not None:
            self.averager = WeightAverager(self.model)
            self.averager.load_state_dict(d["averager"])
        else:
            self.averager = None
        self._state_generation += 1
        t = d["trainer"]
        self.state = _State(t["epoch"], t["step"], list(t["val_history"]), t["asgd_epoch"])
        for h, hs in zip(self.hooks, d["hooks"]):
            h.load_state_dict(hs)
        rng = d["rng"]
        torch.set_rng_state(rng["torch"])
        self.bptt_rng.bit_generator.state = rng["numpy_bptt"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy_global"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._began = True

    def save(self, path, **extra) -> None:
        """Atomically write :meth:`state_dict` plus ``extra`` keys (e.g. model_spec, corpus)."""
        d = self.state_dict()
        d.update(extra)
        atomic_torch_save(d, path)

    def load(self, path, *, saved: dict | None = None) -> dict:
        """Restore from a file written by :meth:`save`; returns the whole saved dict.

        ``saved``: that dict already read (:func:`~lsh_tune.train.checkpoint.read_checkpoint`); ``path``
        then only names it in errors.

        Raises:
            LSHUsageError: the file is unreadable, corrupt, foreign, or holds the state of another
                model, vocabulary or set of hooks (a dense state for a sparse trainer or the reverse).
        """
        d = read_checkpoint(path, required=_STATE_KEYS) if saved is None else saved
        try:
            self.load_state_dict(d)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            reason = " ".join(str(e).split())[:400] or type(e).__name__
            raise LSHUsageError(f"checkpoint {str(path)!r} does not fit this run: {reason}") from None
        return d


def perplexity(loss: float) -> float:
    """exp(``loss``) for a mean NLL in nats/token; ``inf`` where exp would overflow (loss >= 700)."""
    return math.exp(loss) if loss < 700 else float("inf")
