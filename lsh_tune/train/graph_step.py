"""The training step captured whole in a CUDA graph: forward, backward, clipping, SGD, the hooks'
mask re-application and the NT-ASGD average, replayed once per fixed-shape batch.

An RNN language model's step launches thousands of small kernels (the paper RHN: 35 time steps ×
10 highway layers forward, twice that backward), so on a GPU it is bound by kernel launches, not
arithmetic. A CUDA graph records the launches once and replays them with one call. What a graph
needs, this module provides:

* **static buffers** — the batch ``x``/``y`` (T, B) and the recurrent state are copied into tensors
  the graph was recorded with; the new state is copied back into the state buffer *inside* the
  graph, after backward, so consecutive replays carry it without leaving the device;
* **no host synchronisation** — the loss is added, inside the graph, to the trainer's per-epoch
  float64 sum (read once per epoch); clipping and SGD run on device tensors;
* **gradients assigned, not accumulated** — the graph is recorded with every ``.grad`` unset, so
  each replay writes fresh gradients into the graph's own memory (no ``zero_grad`` between replays);
* **graph-safe RNG** — dropout draws from PyTorch's CUDA generator, whose Philox offset a graph
  advances on every replay (the masks differ per batch, as eagerly, though not bit-for-bit the same);
* **re-recording when the step changes** — a new learning rate, NT-ASGD averaging switched on, a
  hook whose :meth:`~lsh_tune.train.TrainingHook.graph_key` changed (the sparse engine's masks after
  prune-and-regrow), or a trainer state loaded; batches of another shape (the odd last batch, every
  batch under variable BPTT) run eagerly between replays.

The same logic runs on the CPU with the replay *emulated* (the step re-run on the static buffers
with the gradients unset), which is how the tests check it against the plain eager loop bit for bit;
on CUDA the real graph is checked against the eager step where CUDA exists.
"""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:  # pragma: no cover
    from lsh_tune.train.trainer import Trainer

__all__ = ["GraphStep", "graph_step_wanted", "GRAPH_ENV"]

#: ``LSH_CUDA_GRAPH=0`` turns the captured step off wherever ``cuda_graph`` is left to ``None`` (auto).
GRAPH_ENV = "LSH_CUDA_GRAPH"

#: eager steps run on a side stream before a recording (cuBLAS/cuDNN handles, lazily built caches)
WARMUP_STEPS = 2


def graph_step_wanted(cuda_graph: bool | None, device: torch.device, *, variable_bptt: bool,
                      hooks: list) -> tuple[bool, str]:
    """Whether a trainer uses :class:`GraphStep`, and why not when it does not.

    Args:
        cuda_graph: ``True`` (required: refused where it cannot apply), ``False``, or ``None``
            (auto: on CUDA with fixed BPTT and graph-safe hooks, unless ``LSH_CUDA_GRAPH=0``).
        device: the trainer's device.
        variable_bptt: the batches change length (every batch would need its own graph).
        hooks: the trainer's hooks; each must be graph-safe (:meth:`TrainingHook.graph_safe`).
    """
    reasons = []
    if device.type != "cuda":
        reasons.append(f"device {device} is not CUDA")
    if variable_bptt:
        reasons.append("variable BPTT changes the batch shape every batch")
    unsafe = [type(h).__name__ for h in hooks if not h.graph_safe()]
    if unsafe:
        reasons.append(f"hook(s) {', '.join(unsafe)} are not graph-safe")
    if cuda_graph is None and os.environ.get(GRAPH_ENV, "1") == "0":
        reasons.append(f"{GRAPH_ENV}=0")
    why = "; ".join(reasons)
    if cuda_graph is True and why:
        from lsh_tune.errors import LSHUsageError
        raise LSHUsageError(f"cuda_graph=True cannot apply: {why} (use cuda_graph=None for auto)")
    return (cuda_graph is not False and not why), why


def _flat(state) -> list[torch.Tensor]:
    """The tensors of a nested tuple state, in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for part in state for t in _flat(part)]


def _rebuild(like, tensors: list[torch.Tensor]):
    """``like``'s nesting with ``tensors`` in place of its tensors (consumed in order)."""
    if isinstance(like, torch.Tensor):
        return tensors.pop(0)
    return tuple(_rebuild(part, tensors) for part in like)


class GraphStep:
    """One trainer's captured step (see the module docstring).

    Args:
        trainer: the :class:`~lsh_tune.train.Trainer` whose ``_step_body`` is captured.
        emulate: re-run the step on the static buffers instead of replaying a CUDA graph (the CPU
            tests' stand-in for a graph; everything but the recording is the same code).
    """

    def __init__(self, trainer: "Trainer", *, emulate: bool = False) -> None:
        self.trainer = trainer
        self.emulate = emulate
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key = None
        self.x = self.y = None
        self.state: list[torch.Tensor] | None = None
        self.state_like = None
        self.warmup_left = 0 if emulate else WARMUP_STEPS
        self.replays = 0
        self.recordings = 0
        self.failed: str | None = None

    # ------------------------------------------------------------------ bookkeeping
    def _current_key(self, lr: float) -> tuple:
        t = self.trainer
        return (lr, t.averager is not None, id(t.averager), tuple(h.graph_key() for h in t.hooks),
                t._state_generation)

    def accepts(self, x: torch.Tensor, seq_len: int) -> bool:
        """The batch has the full BPTT length (the shape the graph is recorded for)."""
        return self.failed is None and seq_len == self.trainer.spec.bptt and x.size(0) == seq_len

    def _holds(self, state) -> bool:
        """``state`` is (a detached view of) the static state buffers."""
        if self.state is None:
            return False
        flat = _flat(state)
        return len(flat) == len(self.state) and all(a.data_ptr() == b.data_ptr() and a.shape == b.shape
                                                    for a, b in zip(flat, self.state))

    def release_state(self, state):
        """The recurrent state to continue eagerly with: a copy of the static state buffers when
        ``state`` is them (the last step was a replay), else ``state`` unchanged."""
        if not self._holds(state):
            return state
        return _rebuild(state, [s.clone() for s in self.state])

    # ------------------------------------------------------------------ the step
    def run(self, x: torch.Tensor, y: torch.Tensor, state, lr: float, eager: Callable):
        """Train on one full-length batch; returns the new state (the static buffer's view).

        ``eager(x, y, state)`` is the trainer's eager step, used for the warm-up steps and after a
        failed recording (then for the rest of the run, with a warning naming the cause).
        """
        key = self._current_key(lr)
        if key != self.key:
            if self.graph is not None and not self.emulate:
                self.warmup_left = 1   # one eager step rebuilds what the step caches (e.g. new float masks)
            self.graph, self.key = None, key
        if self.graph is None and self.warmup_left > 0:
            self.warmup_left -= 1
            return self._warmup(x, y, state, eager)
        self._copy_in(x, y, state)
        if self.graph is None:
            if not self._record():
                return eager(x, y, self.release_state(state))
        self._replay()
        return self.state_like

    def _warmup(self, x, y, state, eager):
        if self.emulate:
            return eager(x, y, state)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            out = eager(x, y, self.release_state(state))
        torch.cuda.current_stream(x.device).wait_stream(side)
        return out

    def _copy_in(self, x, y, state) -> None:
        if self.x is None or self.x.shape != x.shape:
            self.x, self.y = torch.empty_like(x), torch.empty_like(y)
            self.state, self.graph = None, None   # a graph reads the buffers it was recorded with
        self.x.copy_(x)
        self.y.copy_(y)
        if self._holds(state):
            return   # the last replay left the new state in the buffers
        flat = [s.detach() for s in _flat(state)]
        if self.state is None or [s.shape for s in self.state] != [s.shape for s in flat]:
            self.state = [torch.empty_like(s) for s in flat]
            self.graph = None
        for buf, s in zip(self.state, flat):
            buf.copy_(s)
        self.state_like = _rebuild(state, list(self.state))

    def _body(self) -> None:
        new_state = self.trainer._step_body(self.x, self.y, self.state_like, self.trainer.spec.bptt, count_step=False)
        with torch.no_grad():
            for buf, s in zip(self.state, _flat(new_state)):
                buf.copy_(s)

    def _record(self) -> bool:
        self.trainer.optimizer.zero_grad(set_to_none=True)
        self.recordings += 1
        if self.emulate:
            self.graph = "emulated"
            return True
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._body()
        except Exception as e:   # noqa: BLE001 — any capture failure leaves the eager step, which is always correct
            self.failed = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            warnings.warn(f"the CUDA-graph training step could not be recorded ({self.failed}); this run "
                          f"trains with the eager step (set {GRAPH_ENV}=0 to skip the attempt)", RuntimeWarning,
                          stacklevel=3)
            self.graph = None
            self.trainer.optimizer.zero_grad(set_to_none=True)
            return False
        self.graph = graph
        return True

    def _replay(self) -> None:
        self.replays += 1
        self.trainer.state.step += 1
        if self.emulate:
            self.trainer.optimizer.zero_grad(set_to_none=True)   # a recorded backward assigns .grad
            self._body()
        else:
            self.graph.replay()
