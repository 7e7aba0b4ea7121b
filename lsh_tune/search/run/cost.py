"""How long a search and its dense reference take: the schedule's epochs × the cost of one epoch (Ray-free).

Two sources, never mixed in one number:

* **CPU (measured)**: seconds per training and per validation token and per Lyapunov spectrum,
  measured by ``benchmarks/bench_epoch_time.py`` on this machine class (x86-64 cores shared with
  other work, torch 2.13 CPU wheel, float32, one torch thread: one trial per core, the fastest
  of several batches, since contention only ever slows a batch down);
* **GPU (from FLOP counts)**: the FLOPs per token of a training step and of a forward pass and
  of one spectrum, counted by the same benchmark, divided by :data:`GPU_SUSTAINED_FLOPS`, an
  assumed sustained float32 rate for batch-15/20 recurrent steps (a guess, not a measurement:
  benchmarks/gpu_check.sh measures a lent GPU).

The wall clock of a search (:func:`estimate_search`): round 0 cannot close before the reference is
trained (it trains beside the round-0 candidates, in one of the ``slots`` trials that run at once),
every later round takes ⌈n/slots⌉·E epochs, and the finalists then train to ``max_epochs``.
:func:`time_table` is the table of ``docs/cluster.md``. What refuses a search these numbers say
cannot run (a ``paper`` search without GPUs) is a check that uses them:
:func:`lsh_tune.search.run.preflight.check_compute`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from lsh_tune.errors import LSHUsageError, check_choice
from lsh_tune.search._generators import generator_class
from lsh_tune.search._pool import plan_schedule
from lsh_tune.search.config import SearchConfig

__all__ = ["PRESET_SCHEDULES", "DEVICES", "EPOCH_COSTS", "EpochCost", "GPU_SUSTAINED_FLOPS", "SearchEstimate", "TABLE_GPUS",
           "cpu_slots", "estimate_search", "format_duration", "reference_seconds", "time_table"]

#: ``cpu``: measured seconds; ``gpu``: FLOP counts at :data:`GPU_SUSTAINED_FLOPS`.
DEVICES = ("cpu", "gpu")
#: Assumed sustained float32 FLOP/s of one GPU on these models' small batches (≈ 15 % of an A100's or
#: H100's dense float32 peak: sequential steps of 20 × 1500 matrices and QRs do not fill a GPU).
GPU_SUSTAINED_FLOPS = 1.0e13


@dataclass(frozen=True)
class EpochCost:
    """The cost of one epoch (full corpus) and one spectrum of a model at a preset.

    Attributes:
        train_s_per_token, eval_s_per_token, ls_s: measured CPU seconds (see module docstring).
        train_flops_per_token, eval_flops_per_token, ls_flops: counted FLOPs.
        train_tokens, valid_tokens: the preset's corpus (PTB, or WikiText-2 for ``awd_lstm_mos``).
    """

    train_s_per_token: float
    eval_s_per_token: float
    ls_s: float
    train_flops_per_token: float
    eval_flops_per_token: float
    ls_flops: float
    train_tokens: int
    valid_tokens: int

    def epoch_seconds(self, device: str, train_tokens: int | None = None, valid_tokens: int | None = None) -> float:
        """One epoch: training on ``train_tokens`` plus validation on ``valid_tokens`` (default: the whole corpus)."""
        check_choice("device", device, DEVICES)
        train = self.train_tokens if train_tokens is None else train_tokens
        valid = self.valid_tokens if valid_tokens is None else valid_tokens
        if device == "cpu":
            return train * self.train_s_per_token + valid * self.eval_s_per_token
        return (train * self.train_flops_per_token + valid * self.eval_flops_per_token) / GPU_SUSTAINED_FLOPS

    def ls_seconds(self, device: str) -> float:
        """One full spectrum (the search's default LS settings)."""
        check_choice("device", device, DEVICES)
        return self.ls_s if device == "cpu" else self.ls_flops / GPU_SUSTAINED_FLOPS


_PTB, _WT2 = (929_589, 73_760), (2_088_628, 217_646)
#: ``benchmarks/bench_epoch_time.py --threads 1 --repeats 4`` (fastest of 4 batches after a warm-up one);
#: the raw rows are ``benchmarks/epoch_costs.jsonl``.
EPOCH_COSTS: dict[tuple[str, str], EpochCost] = {
    ("stacked_lstm", "paper"): EpochCost(5.5229e-03, 2.5151e-03, 30.11, 3.06000e+08, 1.02000e+08, 2.03148e+12, *_PTB),
    ("stacked_lstm", "small"): EpochCost(2.4515e-04, 7.7641e-05, 0.2107, 1.58400e+07, 5.28000e+06, 4.91520e+09, *_PTB),
    ("stacked_lstm", "tiny"): EpochCost(9.5027e-05, 3.3144e-05, 0.02961, 4.23322e+06, 1.41107e+06, 1.69083e+08, *_PTB),
    ("rhn", "paper"): EpochCost(3.7871e-03, 1.2952e-03, 17.9, 1.40184e+08, 4.69116e+07, 1.10056e+12, *_PTB),
    ("rhn", "small"): EpochCost(2.4900e-04, 9.2164e-05, 0.179, 1.43680e+07, 4.80000e+06, 6.79200e+09, *_PTB),
    ("rhn", "tiny"): EpochCost(1.0582e-04, 3.7300e-05, 0.02437, 4.03333e+06, 1.34554e+06, 1.78913e+08, *_PTB),
    ("awd_lstm_mos", "paper"): EpochCost(3.2787e-02, 1.2086e-02, 16.01, 1.04769e+09, 3.49232e+08, 9.98860e+11, *_WT2),
    ("awd_lstm_mos", "small"): EpochCost(7.0720e-03, 3.1136e-03, 0.2845, 1.04217e+08, 3.47390e+07, 5.22240e+09, *_WT2),
    ("awd_lstm_mos", "tiny"): EpochCost(3.5357e-03, 1.5140e-03, 0.06554, 1.96049e+07, 6.53498e+06, 1.79651e+08, *_WT2),
}


@dataclass(frozen=True)
class SearchEstimate:
    """Wall-clock estimate of a search (seconds) and what it is made of.

    Attributes:
        device: ``cpu`` (measured) or ``gpu`` (FLOP counts).
        slots: trials running at once.
        epoch_s, ls_s: one epoch of one trial, one spectrum.
        reference_s: the dense reference alone (its epochs, one spectrum after each, and epoch 0).
        candidate_epochs: candidate-epochs of the whole schedule (selection + finalists).
        total_s: the search, reference included.
    """

    device: str
    slots: int
    epoch_s: float
    ls_s: float
    reference_s: float
    candidate_epochs: int
    total_s: float


def _cost(cfg: SearchConfig) -> EpochCost:
    try:
        return EPOCH_COSTS[(cfg.model, cfg.preset)]
    except KeyError:
        raise LSHUsageError(f"no measured epoch cost for model={cfg.model!r} preset={cfg.preset!r}; known: "
                            f"{sorted(EPOCH_COSTS)} (benchmarks/bench_epoch_time.py measures one)") from None


def _epoch_and_ls(cfg: SearchConfig, device: str) -> tuple[float, float]:
    cost = _cost(cfg)
    cap = cfg.max_tokens
    train = cost.train_tokens if cap is None else min(cap, cost.train_tokens)
    valid = cost.valid_tokens if cap is None else min(cap, cost.valid_tokens)
    return cost.epoch_seconds(device, train, valid), cost.ls_seconds(device)


def reference_seconds(cfg: SearchConfig, device: str) -> float:
    """The dense reference of ``cfg``: its epochs, each followed by one spectrum, plus the one at epoch 0
    (no time for a ``reference_checkpoint`` beyond one spectrum)."""
    epoch_s, ls_s = _epoch_and_ls(cfg, device)
    if cfg.reference_checkpoint:
        return ls_s
    epochs = cfg.reference_epochs or cfg.resolved_max_epochs()
    return epochs * (epoch_s + ls_s) + ls_s


def estimate_search(cfg: SearchConfig, device: str, slots: int = 1) -> SearchEstimate:
    """How long the search ``cfg`` takes with ``slots`` trials at once on ``device`` (see module docstring)."""
    slots = max(1, int(slots))
    epoch_s, ls_s = _epoch_and_ls(cfg, device)
    E = cfg.rounds_every
    rounds = plan_schedule(cfg.pool_size, E, cfg.final_k, generates=generator_class(cfg.hpo).generates,
                           max_rounds=cfg.max_rounds, epoch_budget=cfg.epoch_budget)
    uses_ls = cfg.signal().needs_reference  # the signal ranks spectra: a reference, and trials compute LS
    round_s = E * epoch_s + (ls_s if uses_ls else 0.0)  # a candidate's round: E epochs, one spectrum at its boundary
    ref_s = reference_seconds(cfg, device) if uses_ls else 0.0
    beside = max(slots - 1, 1) if ref_s else slots
    n0 = rounds[0][0] if rounds else cfg.pool_size
    total = max(ref_s, math.ceil(n0 / beside) * round_s) if rounds else ref_s
    total += sum(math.ceil(n / slots) * round_s for n, _, _ in rounds[1:])
    tail = max(cfg.resolved_max_epochs() - len(rounds) * E, 0)
    total += math.ceil(min(cfg.final_k, n0) / slots) * tail * epoch_s
    candidate_epochs = sum(n * E for n, _, _ in rounds) + cfg.final_k * tail
    return SearchEstimate(device, slots, epoch_s, ls_s, ref_s, candidate_epochs, total)


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``7.5 min``, ``3.2 h``, ``12 days``, ``10 years``."""
    if seconds < 0.05:
        return "< 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365 * 86400):.0f} years"


def cpu_slots(cfg: SearchConfig, cores: int | None = None) -> int:
    """Trials at once on ``cores`` CPU cores (default: this machine's), one per ⌈cpus_per_trial⌉ cores."""
    cores = os.cpu_count() or 1 if cores is None else cores
    return max(1, cores // max(1, math.ceil(cfg.cpus_per_trial)))


#: The search settings of each preset of the experiment scripts (field name → value; the one source:
#: ``lsh_tune.cli.experiment.SCHEDULES`` is these as options, the time table and the ``--preset small``
#: hint of :func:`~lsh_tune.search.run.preflight.check_compute` estimate them).
PRESET_SCHEDULES = {
    "paper": dict(pool=24, rounds_every=3, final_k=2, cpus_per_trial=2),
    "small": dict(pool=8, rounds_every=2, final_k=2, cpus_per_trial=1),
    "tiny": dict(pool=3, rounds_every=1, final_k=2, max_epochs=2, reference_epochs=1, max_tokens=2000, cpus_per_trial=1),
}
#: Cores of the machine the CPU column is measured on, and GPUs of the GPU column.
TABLE_CORES, TABLE_GPUS = 2, 4


def time_table() -> str:
    """The Markdown table of ``docs/cluster.md``: per model and preset, one epoch, one spectrum, the
    dense reference and the whole search, on CPU (measured, :data:`TABLE_CORES` cores, one trial per
    core) and on GPU (FLOP counts, :data:`TABLE_GPUS` GPUs)."""
    rows = ["| model | preset | ref. epochs | CPU epoch | CPU LS | CPU reference | CPU search | GPU epoch | GPU LS "
            "| GPU reference | GPU search |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    corpus = {"awd_lstm_mos": "wikitext-2"}
    for (model, preset) in EPOCH_COSTS:
        cfg = SearchConfig(model=model, preset=preset, corpus=corpus.get(model, "ptb"),
                           **{**PRESET_SCHEDULES[preset], "cpus_per_trial": 1})
        cpu = estimate_search(cfg, "cpu", slots=TABLE_CORES)
        gpu = estimate_search(cfg, "gpu", slots=TABLE_GPUS)
        epochs = cfg.reference_epochs or cfg.resolved_max_epochs()
        cells = [model, preset, str(epochs)] + [format_duration(v) for v in (
            cpu.epoch_s, cpu.ls_s, cpu.reference_s, cpu.total_s, gpu.epoch_s, gpu.ls_s, gpu.reference_s, gpu.total_s)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"

