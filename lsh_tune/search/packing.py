"""``--gpus-per-trial auto``: how many trials share one GPU (Ray-free, pure; the Ray side is
:func:`lsh_tune.search.tune.tuner.resolve_gpus`).

A search's trials are separate processes (Ray Tune trials) that each train one small recurrent
model; one of them alone leaves most of a large GPU idle, so several per GPU train more batches per
second in all. ``auto`` chooses ``gpus_per_trial``:

* **no GPU in the Ray cluster** (none running, and none its autoscaler's node types would start) →
  ``0``: the trials train on CPU (a bare ``lsh-tune search`` runs on a laptop);
* **GPUs** → ``1/k`` with ``k`` trials per GPU (:func:`trials_per_gpu`): as many as fit in the GPU's
  memory by :func:`trial_memory_bytes` (an estimate, with :data:`HEADROOM`), but no more than the
  model's throughput cap (:data:`THROUGHPUT_CAPS`: beyond it packing was not measured to help),
  and at least 1 (a model estimated too large for the GPU gets 1 and a warning);
* **GPU memory unknown** (no GPU visible to the driver, no known ``accelerator_type`` on the
  cluster's nodes) → 1 trial per GPU, and the reason says so.

The memory estimate is counted from the model's tensors, not measured (no peak-memory figure of a
trial on a GPU exists yet); the caps are measured where their comment says so.

What ``auto`` chose and why is printed once and saved with the search (``gpus_per_trial`` holds the
number, ``gpus_per_trial_auto`` the reason), so ``--resume`` reuses the number.

    >>> from lsh_tune.models import get_preset
    >>> trials_per_gpu(*get_preset("stacked_lstm", "paper"), 141e9, vocab_size=10_000)
    4
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from lsh_tune.models import ModelSpec, TrainSpec

__all__ = ["AUTO", "ACCELERATOR_MEMORY", "GPUChoice", "THROUGHPUT_CAPS", "accelerator_memory", "parse_gpus_per_trial",
           "resolve_gpus_per_trial", "trial_memory_bytes", "trials_per_gpu"]

#: The value of ``gpus_per_trial`` (and ``--gpus-per-trial``) that asks for this module's choice.
AUTO = "auto"

#: Most trials per GPU, per model: past this, sharing a GPU was not measured to train more batches per
#: second in all (the memory estimate may allow far more on a large GPU). Sources:
THROUGHPUT_CAPS: dict[str, int] = {
    # measured (benchmarks/gpu_packing.py, one NVIDIA H200, preset paper, 66M parameters): one trial
    # alone trains 13.4 ms per batch; 4 trials sharing the GPU train 2.26x the batches per second.
    "stacked_lstm": 4,
    # not measured for packing. One trial alone is launch-bound (243 ms per batch on the H200, depth-10
    # highway steps of 830 units: the GPU mostly idle), so sharing gains at least what it gains for the
    # stacked LSTM at the same count; kept at that measured count (conservative; benchmarks/gpu_packing.py
    # --model rhn would justify more).
    "rhn": 4,
    # not measured: its 15-expert softmax over WikiText-2's 33k words keeps a GPU busier than the other
    # two models; 2, conservative.
    "awd_lstm_mos": 2,
}
#: Where each cap comes from, as the printed reason says it.
_CAP_NOTES = {"stacked_lstm": "measured on an H200: 4 trials train 2.26x the batches/s of one",
              "rhn": "not measured for packing; the stacked LSTM's measured count",
              "awd_lstm_mos": "not measured; conservative"}
#: The cap of a model without a row (a model you registered): one trial per GPU, as before ``auto``.
DEFAULT_CAP = 1

#: Bytes per parameter a sparse candidate keeps on its GPU: weights 4, gradients 4, the mask (bool 1
#: plus its float32 copy 4, ``Masking``), NT-ASGD's average 4, its int32 counts 4 and the weights
#: swapped out while the average is evaluated 4 (``train/averaging.py``). SGD without momentum keeps
#: no optimizer state.
BYTES_PER_PARAM = 4 + 4 + (1 + 4) + (4 + 4 + 4)
#: float32 values autograd keeps per hidden unit, layer (RHN: per micro-layer) and token for the backward
#: pass: an LSTM's 4 input and 4 recurrent gate pre-activations, c, tanh(c), h and a dropout mask.
ACTIVATION_FLOATS_PER_UNIT = 12
#: Per process: the CUDA context, the loaded kernels, cuBLAS/cuDNN workspaces (an assumption, ~2x the
#: ~0.5 GB a bare PyTorch CUDA context takes).
CUDA_CONTEXT_BYTES = 1.0e9
#: The estimate is multiplied by this (the caching allocator's fragmentation, evaluation and checkpoint
#: copies, the corpus on the device), and only this share of a GPU's memory is planned for.
HEADROOM = 1.5
USABLE_FRACTION = 0.9

#: GPU memory (bytes, the vendor's figure) of Ray's ``accelerator_type:<name>`` node resources; where Ray
#: gives one name to several sizes (A100 40/80 GB, V100 16/32 GB, P100 12/16 GB) the smaller.
ACCELERATOR_MEMORY: dict[str, float] = {
    "H200": 141e9, "H100": 80e9, "H20": 96e9, "B200": 180e9, "A100": 40e9, "A100-40G": 40e9, "A100-80G": 80e9,
    "L40S": 48e9, "L4": 24e9, "A10G": 24e9, "RTX-PRO-6000": 96e9, "V100": 16e9, "T4": 16e9, "P100": 12e9,
    "P4": 8e9, "K80": 12e9,
}


def parse_gpus_per_trial(text: str) -> float | str:
    """``--gpus-per-trial``: ``auto`` (any case) or a number; anything else is returned as given and
    refused by :class:`~lsh_tune.search.config.SearchConfig` (one wording for the CLI and Python)."""
    word = text.strip()
    if word.lower() == AUTO:
        return AUTO
    try:
        return float(word)
    except ValueError:
        return text


def _parameter_count(model_spec: ModelSpec, vocab_size: int) -> int:
    """The model's parameters, counted on PyTorch's meta device (nothing allocated)."""
    import torch

    from lsh_tune.models import build_model

    with torch.device("meta"):
        net = build_model(model_spec, vocab_size)
    return sum(p.numel() for p in net.parameters())


def trial_memory_bytes(model_spec: ModelSpec, train_spec: TrainSpec, vocab_size: int) -> dict[str, float]:
    """Estimated GPU memory of one trial of the model, by part (bytes), before :data:`HEADROOM`.

    Parts: ``parameters`` (:data:`BYTES_PER_PARAM` each), ``activations`` (batch × bptt × Σ hidden ×
    depth × :data:`ACTIVATION_FLOATS_PER_UNIT` float32), ``softmax`` (batch × bptt × vocabulary ×
    (experts + 2) float32, forward and gradient), ``lyapunov`` (two N × N float64 matrices of the
    spectrum, N = 2 Σ hidden: the Jacobian and its product, the ``hc`` state at most), ``context``
    (:data:`CUDA_CONTEXT_BYTES`) and ``total``.
    """
    tokens = train_spec.batch_size * train_spec.bptt
    units = sum(model_spec.hidden)
    parts = {
        "parameters": float(_parameter_count(model_spec, vocab_size) * BYTES_PER_PARAM),
        "activations": float(tokens * units * model_spec.depth * ACTIVATION_FLOATS_PER_UNIT * 4),
        "softmax": float(tokens * vocab_size * ((model_spec.n_experts or 1) + 2) * 4 * 2),
        "lyapunov": float(2 * (2 * units) ** 2 * 8),
        "context": CUDA_CONTEXT_BYTES,
    }
    parts["total"] = sum(parts.values())
    return parts


@dataclass(frozen=True)
class GPUChoice:
    """What ``auto`` chose: ``gpus_per_trial`` (0, or 1/``trials_per_gpu``), the reason in words,
    and a warning where the model looks too large for the GPU."""

    gpus_per_trial: float
    trials_per_gpu: int
    reason: str
    warning: str | None = None

    def line(self) -> str:
        """``gpus_per_trial=auto → 0.25 (4 trials per GPU: ...)``: what a search prints."""
        return f"gpus_per_trial=auto → {self.gpus_per_trial:g} ({self.reason})"


def _plan(model_spec: ModelSpec, train_spec: TrainSpec, gpu_memory_bytes: float | None,
          vocab_size: int, memory_source: str = "") -> tuple[int, str | None, str | None]:
    """(trials per GPU, why, warning); why is ``None`` where the memory is unknown."""
    if gpu_memory_bytes is None:
        return 1, None, None
    model = model_spec.model
    cap = THROUGHPUT_CAPS.get(model, DEFAULT_CAP)
    need = trial_memory_bytes(model_spec, train_spec, vocab_size)["total"] * HEADROOM
    fit = math.floor(gpu_memory_bytes * USABLE_FRACTION / need)
    where = f"{gpu_memory_bytes / 1e9:.0f} GB" + (f" ({memory_source})" if memory_source else "")
    if fit < 1:
        warning = (f"{model} needs an estimated {need / 1e9:.1f} GB per trial (headroom included), more than "
                   f"{USABLE_FRACTION:.0%} of the GPU's {gpu_memory_bytes / 1e9:.0f} GB: one trial per GPU, which may "
                   "run out of memory")
        return 1, f"an estimated {need / 1e9:.1f} GB per trial does not fit in {where}", warning
    cap_why = f"{model}'s throughput cap {cap} ({_CAP_NOTES.get(model, 'no measured cap: one per GPU')})"
    if fit < cap:
        return fit, f"an estimated {need / 1e9:.1f} GB per trial, {fit} fit in {where}, below {cap_why}", None
    return cap, f"{cap_why}; by memory (~{need / 1e9:.1f} GB per trial) {fit} would fit in {where}", None


def trials_per_gpu(model_spec: ModelSpec, train_spec: TrainSpec, gpu_memory_bytes: float | None, *,
                   vocab_size: int) -> int:
    """Trials of this model per GPU of ``gpu_memory_bytes`` (``None``: unknown → 1): as many as fit by
    :func:`trial_memory_bytes` × :data:`HEADROOM` in :data:`USABLE_FRACTION` of the memory, at most
    the model's :data:`THROUGHPUT_CAPS` entry, at least 1."""
    return _plan(model_spec, train_spec, gpu_memory_bytes, vocab_size)[0]


def _share(k: int) -> float:
    """1/k rounded down to Ray's 4-decimal resource precision, so k of them fit in one GPU."""
    return math.floor(10_000 / k) / 10_000


def resolve_gpus_per_trial(requested: float | str, cluster_gpus: float, gpu_memory_bytes: float | None,
                           model_spec: ModelSpec, train_spec: TrainSpec, *, vocab_size: int,
                           memory_source: str = "") -> GPUChoice:
    """``gpus_per_trial`` for a Ray cluster with ``cluster_gpus`` GPUs of ``gpu_memory_bytes`` each.

    Args:
        requested: ``auto``, or a number (returned as it is).
        cluster_gpus: ``ray.cluster_resources()["GPU"]`` (0 without any).
        gpu_memory_bytes: one GPU's memory, ``None`` where unknown.
        model_spec, train_spec, vocab_size: the trial's model (what :func:`trial_memory_bytes` sizes).
        memory_source: where ``gpu_memory_bytes`` comes from, for the reason.
    """
    if requested != AUTO:
        return GPUChoice(float(requested), 0, "given")
    if not cluster_gpus or cluster_gpus <= 0:
        return GPUChoice(0.0, 0, "the Ray cluster has no GPU: the trials train on CPU; a cluster that adds GPU nodes "
                                 "on demand needs an explicit --gpus-per-trial")
    k, memory, warning = _plan(model_spec, train_spec, gpu_memory_bytes, vocab_size, memory_source)
    share = min(_share(k), float(cluster_gpus))
    per = f"{k} trial{'s' if k > 1 else ''} per GPU"
    if memory is None:
        source = memory_source or "no GPU visible to the driver and no known accelerator_type on the cluster"
        why = (f"{per}: GPU memory unknown ({source}), so no packing; pass --gpus-per-trial 0.5 or less to "
               "share GPUs")
    else:
        why = f"{per}: {memory}"
    return GPUChoice(share, k, why, warning)


def accelerator_memory(types: Iterable[str]) -> tuple[float | None, str]:
    """(bytes, source) of the smallest GPU among Ray's ``accelerator_type`` names; ``None`` when there
    is none or one is not in :data:`ACCELERATOR_MEMORY` (then the size of the cluster's GPUs is unknown)."""
    names = sorted(set(types))
    if not names:
        return None, "no GPU visible to the driver and no accelerator_type on the cluster's nodes"
    unknown = [n for n in names if n not in ACCELERATOR_MEMORY]
    if unknown:
        return None, f"no GPU visible to the driver; accelerator_type {', '.join(unknown)} not in the memory table"
    smallest = min(names, key=ACCELERATOR_MEMORY.__getitem__)
    return ACCELERATOR_MEMORY[smallest], f"accelerator_type {smallest} of the cluster's nodes"
