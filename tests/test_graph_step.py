"""The training step recorded for a CUDA graph (issue 19 item 1): the static-buffer step equals the
eager step bit for bit on CPU (replay emulated); on CUDA a real graph matches the eager curve."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lsh_tune.data import load_corpus
from lsh_tune.errors import LSHUsageError
from lsh_tune.models import build_model, get_preset
from lsh_tune.sparse import SparseConfig, build_sparse_hook
from lsh_tune.train import Trainer, TrainingHook, WeightAverager, seed_everything
from lsh_tune.train.graph_step import GRAPH_ENV, GraphStep, graph_step_wanted


@pytest.fixture(scope="module")
def ptb_slice():
    """12k training tokens of real PTB: every epoch of the tiny presets ends on a short batch, which
    leaves the recorded step for an eager one (checked in the test)."""
    c = load_corpus("ptb", max_tokens=12_000)
    c.valid, c.test = c.valid[:2_000], c.test[:2_000]
    return c


def _trainer(corpus, model: str, device: str, *, cuda_graph, mask_gradients: bool = False,
             compile_cell: bool = False, cell: str | None = None):
    spec, train = get_preset(model, "tiny")
    seed_everything(3)
    m = build_model(spec, len(corpus.vocab))
    if cell is not None:
        m.set_cell(cell)
    hook = build_sparse_hook(m, SparseConfig(sparsity=0.6, sparse_init="ER", death="magnitude", growth="gradient",
                                             redistribution="magnitude", death_rate=0.5,
                                             mask_gradients=mask_gradients), seed=3)
    return Trainer(m, corpus, replace(train, lr=30.0, clip=0.25), seed=3, device=device,
                   hooks=[hook], max_epochs=4, cuda_graph=cuda_graph, compile_cell=compile_cell), hook


def _run(t: Trainer, epochs: int) -> list[dict]:
    """``epochs`` epochs, NT-ASGD averaging switched on after the first (as its trigger would)."""
    out = [t.train_epoch()]
    if t.averager is None:
        t.averager = WeightAverager(t.model)
    return out + [t.train_epoch() for _ in range(epochs - 1)]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("model,mask_gradients", [("rhn", False), ("stacked_lstm", True)])
def test_emulated_graph_step_equals_the_eager_step_bit_for_bit(ptb_slice, model, mask_gradients):
    """Everything a graph relies on — static batch and state buffers, the state carried inside the
    step, gradients unset before each replay, the device loss sum, re-recording after prune-and-regrow
    and after NT-ASGD switches on, the short last batch run eagerly — leaves the run bit-identical."""
    eager, eager_hook = _trainer(ptb_slice, model, "cpu", cuda_graph=False, mask_gradients=mask_gradients)
    assert eager.graph_step is None and "not CUDA" in eager.graph_reason
    graphed, graphed_hook = _trainer(ptb_slice, model, "cpu", cuda_graph=False, mask_gradients=mask_gradients)
    graphed.graph_step = step = GraphStep(graphed, emulate=True)
    a, b = _run(eager, 3), _run(graphed, 3)
    for ma, mb in zip(a, b):
        ma.pop("epoch_time_s"), mb.pop("epoch_time_s")
    assert a == b
    rows, bptt = graphed.train_data.size(0) - 1, graphed.spec.bptt
    full, short = divmod(rows, bptt)
    assert short > 0 and eager.step == graphed.step == 3 * (full + 1)
    for (k, va), vb in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        assert torch.equal(va, vb), k
    for k in eager.averager.avg:
        assert torch.equal(eager.averager.avg[k], graphed.averager.avg[k]), k
    for k in eager_hook.masking.masks:
        assert torch.equal(eager_hook.masking.masks[k], graphed_hook.masking.masks[k]), k
    assert step.replays == 3 * full        # every full-length batch replayed, the 3 short ones eager
    # recorded again after each prune-and-regrow (ends of epochs 1 and 2) and when averaging began
    assert step.recordings >= 3, step.recordings


def test_graph_step_is_wanted_only_where_it_applies(monkeypatch):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")

    class Logger(TrainingHook):          # a user's hook that only reads at epoch ends: recordable
        def on_epoch_end(self, trainer):
            pass

    class Reader(TrainingHook):          # a hook that acts after every step: not recordable by default
        def after_optimizer_step(self, trainer):
            pass

    assert graph_step_wanted(None, cuda, variable_bptt=False, hooks=[Logger()]) == (True, "")
    assert graph_step_wanted(False, cuda, variable_bptt=False, hooks=[]) == (False, "")
    on, why = graph_step_wanted(None, cpu, variable_bptt=True, hooks=[Reader()])
    assert not on and "cpu is not CUDA" in why and "variable BPTT" in why and "Reader" in why
    with pytest.raises(LSHUsageError, match="cuda_graph=True cannot apply: .*variable BPTT"):
        graph_step_wanted(True, cuda, variable_bptt=True, hooks=[])
    monkeypatch.setenv(GRAPH_ENV, "0")
    assert graph_step_wanted(None, cuda, variable_bptt=False, hooks=[]) == (False, f"{GRAPH_ENV}=0")
    assert graph_step_wanted(True, cuda, variable_bptt=False, hooks=[])[0]   # asked for explicitly


def test_a_cpu_trainer_refuses_a_required_graph(ptb_slice):
    with pytest.raises(LSHUsageError, match="cuda_graph=True cannot apply: device cpu is not CUDA"):
        _trainer(ptb_slice, "rhn", "cpu", cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs where a GPU exists)")
@pytest.mark.parametrize("model", ["rhn", "stacked_lstm"])
def test_cuda_graph_step_matches_the_eager_curve(ptb_slice, model):
    """Real CUDA graphs against the eager step, both on this GPU (the tiny presets have no dropout, so
    both draw no random numbers). Tolerance: ten times the spread of two eager runs measured here
    (float32 atomics in the embedding's backward are not ordered), at least 1e-6 relative. RHN also:
    the compiled cell inside the graph (the default on CUDA) against the eager curve, within ten times
    the spread between the two eager cells (fused and autograd backward: one function, other rounding,
    as Inductor's kernels are)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    runs = {}
    cases = [("eager1", False, False, None), ("eager2", False, False, None), ("graph", True, False, None)]
    if model == "rhn":
        cases += [("autograd", False, False, "autograd"), ("graph_compiled", True, True, None)]
    for name, cg, compiled, cell in cases:
        t, _ = _trainer(ptb_slice, model, "cuda", cuda_graph=cg, compile_cell=compiled, cell=cell)
        runs[name] = [m["val_loss"] for m in _run(t, 3)]
        if cg:
            full = (t.train_data.size(0) - 1) // t.spec.bptt
            assert t.graph_step.failed is None and t.graph_step.replays >= 3 * full - 2 * 3   # warm-ups eager
    spread = max(abs(a - b) for a, b in zip(runs["eager1"], runs["eager2"]))
    tol = max(10 * spread, 1e-6 * abs(runs["eager1"][-1]))
    assert max(abs(a - b) for a, b in zip(runs["eager1"], runs["graph"])) <= tol, runs
    if model == "rhn":
        assert t.compiled_cell and t.model._compiled_ran
        cells = max(abs(a - b) for a, b in zip(runs["eager1"], runs["autograd"]))
        assert max(abs(a - b) for a, b in zip(runs["eager1"], runs["graph_compiled"])) <= max(10 * cells, tol), runs

