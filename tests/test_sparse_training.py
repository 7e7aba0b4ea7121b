"""Dynamic sparse training inside the real Trainer on real PTB slices."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from lsh_tune.data import load_corpus
from lsh_tune.models import build_model, get_preset, with_overrides
from lsh_tune.sparse import DEATH_MODES, SPARSE_INITS, SparseConfig, build_sparse_hook, er_densities
from lsh_tune.train import Trainer, TrainingHook

from helpers import unigram_perplexity


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


@pytest.fixture(scope="module")
def ptb_2k():
    return load_corpus("ptb", max_tokens=1000)


class InvariantChecker(TrainingHook):
    """Runs after the sparse hook: checks the invariants after every step and every prune."""

    def __init__(self, sparse_hook):
        self.hook = sparse_hook
        self.prunes_seen = 0
        self.init_counts = {k: int(m.sum()) for k, m in sparse_hook.masking.masks.items()}

    def _check_zero(self, trainer):
        masking = self.hook.masking
        for k, p in masking.params(trainer.model).items():
            assert (p.detach()[~masking.masks[k]] == 0).all(), k

    def after_optimizer_step(self, trainer):
        self._check_zero(trainer)

    def on_epoch_end(self, trainer):
        masking = self.hook.masking
        if masking.prune_steps > self.prunes_seen:
            self.prunes_seen = masking.prune_steps
            assert masking.active() == masking.target
            assert sum(int(m.sum()) for m in masking.masks.values()) == masking.target
            self._check_zero(trainer)
            if self.hook.config.redistribution == "none":  # per-tensor counts never move
                assert {k: int(m.sum()) for k, m in masking.masks.items()} == self.init_counts


VARIANTS = list(itertools.product(SPARSE_INITS, DEATH_MODES, ("magnitude", "nonzeros", "none")))


@pytest.mark.parametrize("init,death,redistribution", VARIANTS)
def test_every_variant_keeps_exact_density(ptb_2k, init, death, redistribution):
    ms, ts = get_preset("stacked_lstm", "tiny")
    ts = with_overrides(ts, batch_size=20, bptt=10, epochs=3)  # 5 batches per epoch
    torch.manual_seed(0)
    model = build_model(ms, len(ptb_2k.vocab))
    cfg = SparseConfig(0.67, init, death, "random", redistribution, 0.7)
    hook = build_sparse_hook(model, cfg, seed=0)
    masking = hook.masking
    assert masking.active() == masking.target == round(0.33 * masking.total)
    if init == "ER":
        want = er_densities(masking.shapes, 0.33)
        for k, m in masking.masks.items():
            assert abs(int(m.sum()) - want[k] * masking.numels[k]) <= 1.0
    checker = InvariantChecker(hook)
    trainer = Trainer(model, ptb_2k, ts, seed=0, hooks=[hook, checker])
    metrics = trainer.fit()
    assert checker.prunes_seen == 2  # after epochs 1 and 2, not after the last
    assert all(math.isfinite(m["val_loss"]) for m in metrics)
    rates = [h["death_rate"] for h in hook.history]
    assert rates == sorted(rates, reverse=True) and 0.005 <= rates[-1] < 0.7


def test_resume_reproduces_the_uninterrupted_run(ptb_2k, tmp_path):
    ms, ts = get_preset("stacked_lstm", "tiny")
    ts = with_overrides(ts, batch_size=20, bptt=10, epochs=3)  # 5 batches per epoch
    cfg = SparseConfig(0.67, "ER", "SET", "random", "nonzeros", 0.7)

    def fresh():
        torch.manual_seed(0)
        model = build_model(ms, len(ptb_2k.vocab))
        hook = build_sparse_hook(model, cfg, seed=5)
        return hook, Trainer(model, ptb_2k, ts, seed=0, hooks=[hook])

    hook_a, full = fresh()
    full.fit()
    hook_b, part = fresh()
    part.fit(epochs=2)
    part.save(tmp_path / "ckpt.pt")
    hook_c, resumed = fresh()
    resumed.load(tmp_path / "ckpt.pt")
    resumed.fit()
    for k in hook_a.masking.masks:
        assert torch.equal(hook_a.masking.masks[k], hook_c.masking.masks[k])
    for (k, pa), pc in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(pa, pc, msg=k)


def test_sparse_small_lstm_val_ppl_decreases_each_epoch():
    """A sparse ``small`` stacked LSTM at sparsity 0.67 learns on real PTB (10k-token slice)."""
    corpus = load_corpus("ptb", max_tokens=10000)
    ms, ts = get_preset("stacked_lstm", "small")
    ts = with_overrides(ts, epochs=3)
    torch.manual_seed(0)
    model = build_model(ms, len(corpus.vocab))
    hook = build_sparse_hook(model, SparseConfig(0.67, "ER", "magnitude", "random", "nonzeros", 0.7), seed=0)
    metrics = Trainer(model, corpus, ts, seed=0, hooks=[hook]).fit()
    ppl = [m["val_ppl"] for m in metrics]
    print(f"small sparse val ppl per epoch {[round(p, 1) for p in ppl]}")  # -rP shows it
    assert ppl == sorted(ppl, reverse=True) and ppl[-1] < ppl[0], ppl
    assert hook.masking.prune_steps == 2 and hook.masking.active() == hook.masking.target


@pytest.mark.slow  # ~50 s each on 1 thread: ~700 steps are needed to leave the plateau
@pytest.mark.parametrize("init,death,redistribution,rate", [
    ("ER", "global_magnitude", "nonzeros", 0.7),  # the authors' best stacked-LSTM candidate
    ("uniform", "magnitude", "none", 0.5),
])
def test_sparse_tiny_candidates_leave_the_unigram_plateau(init, death, redistribution, rate):
    """Calibration guard: at sparsity 0.67 the ``tiny`` preset must learn more than unigrams.

    Uses the preset's own optimizer settings and epochs on a 60k-token PTB slice. Measured
    (unigram 757): ER/global_magnitude/nonzeros 819 → 576, uniform/magnitude/none 803 → 582 on
    one machine; 810 → 520 and 804 → 657 on another of the same class (2026-12-02: the same code
    and seeds, other floating-point paths), hence the bound 0.9 × unigram: still well below the
    plateau that SET stays on.
    SET death as specified (it removes the largest-magnitude negative weights) stays on the
    plateau here (uniform/SET/none 781, ER/SET/nonzeros 785 after 4 epochs), so it is not used.
    """
    corpus = load_corpus("ptb", max_tokens=60000)
    unigram = unigram_perplexity(corpus.train, corpus.valid, len(corpus.vocab))
    ms, ts = get_preset("stacked_lstm", "tiny")
    torch.manual_seed(0)
    model = build_model(ms, len(corpus.vocab))
    hook = build_sparse_hook(model, SparseConfig(0.67, init, death, "random", redistribution, rate), seed=0)
    metrics = Trainer(model, corpus, ts, seed=0, hooks=[hook]).fit()
    best = min(m["val_ppl"] for m in metrics)
    print(f"unigram {unigram:.1f}; val ppl per epoch {[round(m['val_ppl'], 1) for m in metrics]}")  # -rP shows it
    assert best < 0.9 * unigram, (best, unigram, [round(m["val_ppl"], 1) for m in metrics])
