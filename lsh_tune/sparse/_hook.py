"""Dynamic sparse training as a :class:`~lsh_tune.train.TrainingHook` (the thin adapter)."""
from __future__ import annotations

import functools

import torch
from torch import nn

from lsh_tune.sparse import _modes
from lsh_tune.sparse._config import DEATH_RATE_FLOOR, SparseConfig
from lsh_tune.sparse._masking import Masking
from lsh_tune.train import TrainingHook

__all__ = ["SparseTrainingHook", "build_sparse_hook"]


class SparseTrainingHook(TrainingHook):
    """Selfish-RNN-style dynamic sparse training plugged into :class:`~lsh_tune.train.Trainer`.

    * during backward (``config.mask_gradients``, a tensor hook on each masked weight): the
      gradient of inactive weights is zeroed before the trainer clips it, so gradient clipping
      sees the gradient of the sparse network; the dense gradient is kept for ``gradient``
      growth and folded into the ``momentum`` modes' moving average;
    * after every optimizer step: re-apply the masks, zero optimizer buffers (SGD momentum)
      under them and, for the ``momentum`` modes (without ``mask_gradients``), update the
      gradient moving average ``m ← β m + (1 − β) g`` (the trainer's SGD keeps no momentum by
      default, and an SGD momentum buffer zeroed under the mask would carry no signal for
      inactive weights, so the moving average of the dense gradient is always used);
    * at the end of every ``prune_interval_epochs``-th epoch except the last planned one:
      prune and regrow with death rate p(t) (cosine decay over the planned steps,
      ``trainer.progress.total_steps``, to 0.005). When NT-ASGD averaging is active, the running
      averages of removed and regrown weights restart (SNT-ASGD): a removed weight's average
      stays 0, a regrown one starts a fresh average from its first update.

    It reads the trainer through ``model``, ``optimizer`` and ``progress``
    (:class:`~lsh_tune.train.TrainingProgress`) only. Build it with :func:`build_sparse_hook`,
    before the :class:`Trainer` (the sparse initialization edits the model's weights).
    """

    def __init__(self, model: nn.Module, config: SparseConfig, *, seed: int = 0) -> None:
        self.config = config
        self.masking = Masking(model, config, seed=seed)
        self.momenta: dict[str, torch.Tensor] | None = None
        if config.needs_momentum:
            self.momenta = {k: torch.zeros_like(p) for k, p in self.masking.params(model).items()}
        self.history: list[dict] = []
        self._dense_grads: dict[str, torch.Tensor] = {}
        self._handles = []
        if config.mask_gradients:
            for k, p in self.masking.params(model).items():
                self._handles.append(p.register_hook(functools.partial(self._grad_hook, k)))

    def _grad_hook(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        """Tensor hook on a masked weight: record the dense gradient, return the masked one."""
        with torch.no_grad():
            if self.momenta is not None:
                self._update_momentum(name, grad)
            if self.config.growth == "gradient":
                self._dense_grads[name] = grad.detach()
            return grad * self.masking._fmask(name, grad)

    def _update_momentum(self, name: str, grad: torch.Tensor) -> None:
        m = self.momenta[name]
        if m.device != grad.device:
            m = self.momenta[name] = m.to(grad.device)
        m.mul_(self.config.momentum_beta).add_(grad, alpha=1.0 - self.config.momentum_beta)

    def close(self) -> None:
        """Remove the gradient hooks from the model's parameters (``mask_gradients``)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # ------------------------------------------------------------------ hook API
    def on_train_begin(self, trainer) -> None:
        self.masking.apply(trainer.model)
        self.masking.mask_buffers(trainer.model, trainer.optimizer)

    @torch.no_grad()
    def after_optimizer_step(self, trainer) -> None:
        model = trainer.model
        self.masking.apply(model)
        if trainer.optimizer.defaults.get("momentum", 0) or _has_buffers(trainer.optimizer):
            self.masking.mask_buffers(model, trainer.optimizer)
        if self.momenta is not None and not self.config.mask_gradients:
            for k, p in self.masking.params(model).items():
                if p.grad is not None:
                    self._update_momentum(k, p.grad)

    def graph_safe(self) -> bool:
        """Its per-step work (mask re-application, buffer masking, the gradient moving average,
        the gradient hook) is device work on the same tensors every step: recordable."""
        return True

    def graph_key(self) -> tuple:
        """Changes when prune-and-regrow replaces the masks (and their cached float copies)."""
        return (self.masking.prune_steps, tuple(id(f) for f in self.masking._fmasks.values()))

    def should_prune(self, epochs_done: int, max_epochs: int) -> bool:
        """Prune after epoch ``epochs_done`` (1-based) unless it is the last planned epoch."""
        return epochs_done % self.config.prune_interval_epochs == 0 and epochs_done < max_epochs

    def on_epoch_end(self, trainer) -> None:
        progress = trainer.progress  # its epoch is the one that just ended
        if not self.should_prune(progress.epoch, progress.max_epochs):
            return
        rate = _modes.cosine_death_rate(progress.step, progress.total_steps, self.config.death_rate,
                                        DEATH_RATE_FLOOR)
        self.prune(trainer, rate, epoch=progress.epoch)

    @torch.no_grad()
    def prune(self, trainer, rate: float, *, epoch: int | None = None) -> dict[str, dict]:
        """Prune and regrow now with death rate ``rate``; update optimizer/averager state."""
        model = trainer.model
        params = self.masking.params(model)
        if self.config.mask_gradients:
            grads = {k: self._dense_grads.get(k) for k in params}
        else:
            grads = {k: p.grad for k, p in params.items()}
        if self.momenta is not None:
            self.momenta = {k: m.to(params[k].device) for k, m in self.momenta.items()}
        changes = self.masking.prune_and_regrow(model, rate, momenta=self.momenta, grads=grads)
        self.masking.mask_buffers(model, trainer.optimizer)
        progress = trainer.progress
        averager = progress.averager
        if averager is not None:
            for k, c in changes.items():
                averager.restart(k, c["removed"] | c["grown"])
        self.history.append({"epoch": epoch, "step": int(progress.step), "death_rate": rate,
                             "removed": {k: int(c["removed"].sum()) for k, c in changes.items()},
                             "grown": {k: int(c["grown"].sum()) for k, c in changes.items()},
                             "active": self.masking.active(), "tau": self.masking.tau,
                             "averaging": averager is not None})
        return changes

    # ------------------------------------------------------------------ reporting and state
    def report(self, model: nn.Module | None = None) -> dict:
        """:meth:`Masking.report` plus the config and the prune-and-regrow history."""
        out = self.masking.report(model)
        out["config"] = self.config.to_dict()
        out["prune_steps"] = self.masking.prune_steps
        out["history"] = [dict(h) for h in self.history]
        return out

    def state_dict(self) -> dict:
        return {"masking": self.masking.state_dict(), "history": [dict(h) for h in self.history],
                "momenta": None if self.momenta is None else {k: v.detach().cpu().clone()
                                                              for k, v in self.momenta.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.masking.load_state_dict(d["masking"])
        self.history = [dict(h) for h in d["history"]]
        if self.momenta is not None and d.get("momenta") is not None:
            for k in self.momenta:
                self.momenta[k] = d["momenta"][k].to(self.momenta[k].device).clone()


def _has_buffers(optimizer: torch.optim.Optimizer) -> bool:
    for st in optimizer.state.values():
        if any(isinstance(v, torch.Tensor) and v.dim() > 0 for v in st.values()):
            return True
    return False


def build_sparse_hook(model: nn.Module, config: SparseConfig, seed: int = 0) -> SparseTrainingHook:
    """Sparsify ``model`` in place (masks, optional init scale) and return the training hook.

    Args:
        model: the freshly built model (before :class:`~lsh_tune.train.Trainer` moves it).
        config: the candidate.
        seed: seeds every random draw of the engine (mask sampling, random growth).

    Example:
        >>> from lsh_tune.models import StackedLSTM
        >>> m = StackedLSTM(50, 8, (8,))
        >>> hook = build_sparse_hook(m, SparseConfig(0.5), seed=0)
        >>> hook.report()["density"]
        0.5
    """
    return SparseTrainingHook(model, config, seed=seed)
