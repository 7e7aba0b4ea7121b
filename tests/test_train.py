"""Dense training: learning on real PTB, NT-ASGD, bit-identical resume."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from helpers import unigram_perplexity
from lsh_tune.data import load_corpus
from lsh_tune.errors import LSHUsageError
from lsh_tune.models import build_model, get_preset
from lsh_tune.train import (Trainer, TrainingHook, TrainingProgress, WeightAverager, nt_asgd_should_switch,
                            seed_everything)


def _trainer(corpus, model="stacked_lstm", seed=0, **kw):
    spec, train = get_preset(model, "tiny")
    seed_everything(seed)
    return Trainer(build_model(spec, len(corpus.vocab)), corpus, replace(train, **kw), seed=seed, device="cpu")


@pytest.fixture(scope="module")
def ptb_learning_slice():
    """80k training tokens of real PTB, 8k validation and test tokens."""
    c = load_corpus("ptb", max_tokens=80_000)
    c.valid, c.test = c.valid[:8_000], c.test[:8_000]
    return c


def test_tiny_lstm_learns_far_below_unigram(ptb_learning_slice):
    c = ptb_learning_slice
    t = _trainer(c, epochs=4)
    history = t.fit(callback=lambda m: print(m, flush=True))
    unigram = unigram_perplexity(c.train, c.valid, len(c.vocab))
    assert history[-1]["val_ppl"] < 0.7 * unigram, (history[-1]["val_ppl"], unigram)
    assert history[-1]["val_loss"] < history[0]["val_loss"]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("int64_counts", [False, True], ids=["this-format", "int64-counts"])
def test_resume_is_bit_identical(tmp_path, int64_counts):
    """Also from a state whose NT-ASGD counters are int64 (written before they became int32)."""
    c = load_corpus("ptb", max_tokens=3000)
    kw = dict(epochs=3, batch_size=5, bptt=20, variable_bptt=True)

    def run(t, until):
        t.fit(1)
        if t.averager is None:
            t.averager = WeightAverager(t.model)  # averaging from epoch 2 on, as after an NT-ASGD switch
        t.fit(until)

    straight = _trainer(c, "awd_lstm_mos", seed=3, **kw)
    run(straight, 3)
    first = _trainer(c, "awd_lstm_mos", seed=3, **kw)
    run(first, 2)
    first.save(tmp_path / "ck.pt")
    saved = torch.load(tmp_path / "ck.pt", weights_only=False)
    assert {v.dtype for v in saved["averager"]["count"].values()} == {torch.int32}
    if int64_counts:
        saved["averager"]["count"] = {k: v.to(torch.int64) for k, v in saved["averager"]["count"].items()}
        torch.save(saved, tmp_path / "ck.pt")
    resumed = _trainer(c, "awd_lstm_mos", seed=99, **kw)  # other seed: state must come from the file
    resumed.load(tmp_path / "ck.pt")
    assert resumed.epoch == 2 and resumed.averager is not None
    assert {v.dtype for v in resumed.averager.count.values()} == {torch.int32}
    resumed.fit()
    for (n, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), n
    for n in straight.averager.avg:
        assert torch.equal(straight.averager.avg[n], resumed.averager.avg[n]), n
    assert straight.state.val_history == resumed.state.val_history


class _ProgressRecorder(TrainingHook):
    """Records the trainer's public view at every hook call."""

    def __init__(self):
        self.seen = []

    def on_train_begin(self, trainer):
        self.seen.append(("begin", trainer.progress))

    def after_optimizer_step(self, trainer):
        self.seen.append(("step", trainer.progress))

    def on_epoch_end(self, trainer):
        self.seen.append(("end", trainer.progress))


@pytest.mark.usefixtures("one_torch_thread")
def test_hooks_see_the_progress_view():
    c = load_corpus("ptb", max_tokens=1000)
    spec, train = get_preset("stacked_lstm", "tiny")
    rec = _ProgressRecorder()
    t = Trainer(build_model(spec, len(c.vocab)), c, replace(train, batch_size=20, bptt=10, epochs=3), seed=0,
                device="cpu", hooks=[rec])
    assert t.batches_per_epoch == 5 and t.total_steps == 15
    t.fit(1)
    t.averager = WeightAverager(t.model)  # as after an NT-ASGD switch
    t.fit(2)
    kinds = [k for k, _ in rec.seen]
    assert kinds == ["begin"] + (["step"] * 5 + ["end"]) * 2
    views = [p for _, p in rec.seen]
    assert views[0] == TrainingProgress(epoch=1, max_epochs=3, step=0, total_steps=15, averager=None)
    assert [p.step for p in views[1:6]] == [1, 2, 3, 4, 5] and views[6].step == 5
    assert {p.epoch for p in views[1:7]} == {1} and {p.epoch for p in views[7:]} == {2}  # the epoch being trained
    assert all(p.averager is None for p in views[:7]) and all(p.averager is t.averager for p in views[7:])
    with pytest.raises(AttributeError):
        views[0].step = 3  # a snapshot hooks cannot write through


def test_nt_asgd_rule():
    assert not nt_asgd_should_switch([5.0, 4.0, 3.0], 3.5, 5)          # too few evaluations
    hist = [5.0, 4.0, 3.9, 3.95, 3.96, 3.97, 3.98]
    assert nt_asgd_should_switch(hist, 4.1, 5)                         # worse than best of all but last 5
    assert not nt_asgd_should_switch(hist, 3.8, 5)
    assert nt_asgd_should_switch([4.0], 4.5, 0) and not nt_asgd_should_switch([], 4.5, 0)


def test_averager_matches_hand_computed_average():
    m = torch.nn.Linear(3, 2)
    avg = WeightAverager(m)
    seen = []
    for k in range(4):
        with torch.no_grad():
            m.weight.add_(float(k + 1))
        seen.append(m.weight.detach().clone())
        avg.update(m)
    assert torch.allclose(avg.avg["weight"], torch.stack(seen).mean(0))
    where = torch.zeros_like(m.weight, dtype=torch.bool)
    where[0, 1] = True
    avg.restart("weight", where)
    with torch.no_grad():
        m.weight.add_(1.0)
    avg.update(m)
    assert avg.avg["weight"][0, 1] == m.weight[0, 1]                   # fresh average of one sample
    expected = torch.stack(seen + [m.weight.detach()]).mean(0)
    assert torch.allclose(avg.avg["weight"][1], expected[1])
    with avg.swap_in(m):
        assert torch.equal(m.weight, avg.avg["weight"])
    assert not torch.equal(m.weight, avg.avg["weight"])


def test_bad_train_values():
    c = load_corpus("ptb", max_tokens=2000)
    with pytest.raises(LSHUsageError, match="lr"):
        _trainer(c, lr=-1.0)
    with pytest.raises(LSHUsageError, match="epochs"):
        _trainer(c, epochs=-2)
