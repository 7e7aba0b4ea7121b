"""Masking, config validation, state round trips and SNT-ASGD averaging on small models."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lsh_tune.errors import LSHUsageError
from lsh_tune.models import RHN, StackedLSTM
from lsh_tune.sparse import (DEATH_MODES, GROWTH_MODES, REDISTRIBUTION_MODES, SPARSE_INITS, SparseConfig,
                             build_sparse_hook, er_densities)
from lsh_tune.train import TrainingProgress, WeightAverager


def _lstm(seed=0):
    torch.manual_seed(seed)
    return StackedLSTM(300, 16, (16, 12))


class _FakeTrainer(SimpleNamespace):
    """What a hook sees of a Trainer: ``model``, ``optimizer`` and ``progress`` (``epoch``: completed epochs)."""

    @property
    def progress(self) -> TrainingProgress:
        return TrainingProgress(epoch=self.epoch + 1, max_epochs=self.max_epochs, step=self.step,
                                total_steps=self.total_steps, averager=self.averager)


def _fake_trainer(model, *, momentum=0.0, epoch=0, max_epochs=5, step=10, total_steps=100):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    return _FakeTrainer(model=model, optimizer=opt, averager=None, epoch=epoch, max_epochs=max_epochs,
                        step=step, total_steps=total_steps)


def _one_step(model, hook):
    """One SGD step of ``model`` on random tokens with ``hook`` applied after it; returns the fake trainer."""
    tr = _fake_trainer(model)
    x = torch.randint(0, 300, (5, 3))
    out, _ = model(x, model.init_state(3))
    out.sum().backward()
    tr.optimizer.step()
    hook.after_optimizer_step(tr)
    return tr


def test_mode_tuples_are_the_issue_names():
    assert SPARSE_INITS == ("uniform", "ER")
    assert DEATH_MODES == ("magnitude", "SET", "threshold", "global_magnitude", "SET_paper")
    assert GROWTH_MODES == ("random", "momentum", "gradient")
    assert REDISTRIBUTION_MODES == ("magnitude", "nonzeros", "momentum", "none")


@pytest.mark.parametrize("field,value,allowed", [
    ("sparse_init", "erk", "uniform, ER"),
    ("death", "random", "magnitude, SET, threshold, global_magnitude, SET_paper"),
    ("growth", "SET", "random, momentum, gradient"),
    ("redistribution", "grad", "magnitude, nonzeros, momentum, none"),
    ("masked", ("bias",), "embedding, input, recurrent, output, other"),
])
def test_unknown_mode_lists_allowed_values(field, value, allowed):
    with pytest.raises(LSHUsageError, match=allowed):
        SparseConfig(0.5, **{field: value})


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_sparsity_outside_open_unit_interval(sparsity):
    with pytest.raises(LSHUsageError, match=r"sparsity=.*allowed: \(0.0, 1.0\)"):
        SparseConfig(sparsity)


@pytest.mark.parametrize("rate", [0.0, 1.0, 2.0])
def test_death_rate_outside_open_unit_interval(rate):
    with pytest.raises(LSHUsageError, match=r"death_rate=.*allowed: \(0.0, 1.0\)"):
        SparseConfig(0.5, death_rate=rate)


def test_bad_interval_and_init_scale():
    with pytest.raises(LSHUsageError, match="prune_interval_epochs"):
        SparseConfig(0.5, prune_interval_epochs=0)
    with pytest.raises(LSHUsageError, match="init_scale"):
        SparseConfig(0.5, init_scale="yes")


def test_config_round_trip():
    c = SparseConfig(0.67, "ER", "SET", "gradient", "nonzeros", 0.7, masked=["recurrent", "input"])
    assert c.masked == ("input", "recurrent")
    assert SparseConfig.from_dict(c.to_dict()) == c
    with pytest.raises(LSHUsageError, match="unknown SparseConfig keys"):
        SparseConfig.from_dict({"sparsity": 0.5, "bogus": 1})


@pytest.mark.parametrize("init", SPARSE_INITS)
def test_init_exact_count_and_zeros(init):
    model = _lstm()
    hook = build_sparse_hook(model, SparseConfig(0.67, init), seed=3)
    masking = hook.masking
    assert masking.active() == masking.target == round(0.33 * masking.total)
    params = dict(model.named_parameters())
    for k, m in masking.masks.items():
        assert (params[k][~m] == 0).all()
    assert set(masking.names) == {"encoder.weight", "rnns.0.weight_ih_l0", "rnns.0.weight_hh_l0",
                                  "rnns.1.weight_ih_l0", "rnns.1.weight_hh_l0", "decoder.weight"}
    if init == "ER":
        want = er_densities(masking.shapes, 0.33)
        for k, m in masking.masks.items():
            assert abs(int(m.sum()) - want[k] * masking.numels[k]) <= 1.0
    else:
        for k, m in masking.masks.items():
            assert abs(int(m.sum()) / masking.numels[k] - 0.33) <= 1.0 / masking.numels[k] + 1e-9


@pytest.mark.parametrize("scale", [True, False])
def test_init_scale_rescales_survivors(scale):
    dense, sparse = _lstm(), _lstm()
    hook = build_sparse_hook(sparse, SparseConfig(0.75, "ER", init_scale=scale), seed=0)
    d_params = dict(dense.named_parameters())
    for k, p in sparse.named_parameters():
        if k not in hook.masking.masks:
            assert torch.equal(p, d_params[k])  # biases untouched
            continue
        m = hook.masking.masks[k]
        f = 1 / math.sqrt(int(m.sum()) / m.numel()) if scale else 1.0
        torch.testing.assert_close(p[m], d_params[k][m] * f)


def test_tied_weights_are_masked_once():
    torch.manual_seed(0)
    model = RHN(200, 16, 16, depth=2, tied=True)
    hook = build_sparse_hook(model, SparseConfig(0.5), seed=0)
    rep = hook.report(model)
    assert "decoder.weight" not in rep["masked"] and "encoder.weight" in rep["masked"]
    assert rep["per_tensor"]["encoder.weight"]["groups"] == ["embedding", "output"]
    assert set(rep["masked"]) == {"encoder.weight", "input_proj.weight", "highway.0.weight", "highway.1.weight"}
    assert model.decoder.weight is model.encoder.weight
    assert rep["active"] == rep["target_active"]


def test_masked_groups_select_tensors_and_report_the_rest():
    model = _lstm()
    hook = build_sparse_hook(model, SparseConfig(0.5, masked=("recurrent",)), seed=0)
    rep = hook.report(model)
    assert rep["masked"] == ["rnns.0.weight_hh_l0", "rnns.1.weight_hh_l0"]
    assert set(rep["unmasked"]) == {"encoder.weight", "rnns.0.weight_ih_l0", "rnns.1.weight_ih_l0",
                                    "decoder.weight"}
    assert (model.encoder.weight != 0).all()


def test_after_step_masks_weights_and_momentum_buffers():
    model = _lstm()
    hook = build_sparse_hook(model, SparseConfig(0.6), seed=0)
    tr = _fake_trainer(model, momentum=0.9)
    x = torch.randint(0, 300, (5, 3))
    for _ in range(2):
        tr.optimizer.zero_grad()
        out, _ = model(x, model.init_state(3))
        out.sum().backward()
        tr.optimizer.step()
        hook.after_optimizer_step(tr)
    for k, p in hook.masking.params(model).items():
        m = hook.masking.masks[k]
        assert (p[~m] == 0).all()
        assert (tr.optimizer.state[p]["momentum_buffer"][~m] == 0).all()
        assert (p[m] != 0).any()


@pytest.mark.parametrize("growth", GROWTH_MODES)
@pytest.mark.parametrize("redistribution", REDISTRIBUTION_MODES)
def test_prune_keeps_count_and_drop_grow_disjoint(growth, redistribution):
    model = _lstm()
    cfg = SparseConfig(0.67, "ER", "global_magnitude", growth, redistribution, mask_gradients=growth == "gradient")
    hook = build_sparse_hook(model, cfg, seed=0)
    tr = _one_step(model, hook)
    before = {k: m.clone() for k, m in hook.masking.masks.items()}
    changes = hook.prune(tr, 0.5)
    assert hook.masking.active() == hook.masking.target
    for k, c in changes.items():
        if redistribution != "none":  # the regrowth is placed where there is room: disjoint
            assert not (c["removed"] & c["grown"]).any()
        else:  # a layer regrows what it lost; just-removed weights return only if it is full
            assert not (c["removed"] & c["grown"]).any() or c["grown"][~before[k]].all()
        assert not (c["removed"] & ~before[k]).any() and not (c["grown"] & before[k]).any()
        assert (dict(model.named_parameters())[k][c["grown"]] == 0).all()  # regrown start at zero
    if growth == "gradient":  # the regrown weights have the largest |grad| among the candidates
        k = "decoder.weight"
        g = hook._dense_grads[k].abs()  # the dense gradient, recorded before masking
        assert (model.decoder.weight.grad[~before[k]] == 0).all()  # the optimizer saw the masked one
        cand = ~before[k]
        grown = changes[k]["grown"]
        if grown.any():
            assert g[grown].min() >= g[cand & ~grown].max()


def test_prune_only_on_interval_and_not_after_last_epoch():
    model = _lstm()
    hook = build_sparse_hook(model, SparseConfig(0.5, prune_interval_epochs=2), seed=0)
    assert [hook.should_prune(e, 6) for e in range(1, 7)] == [False, True, False, True, False, False]
    tr = _fake_trainer(model, epoch=1, max_epochs=6, step=50, total_steps=100)
    hook.on_epoch_end(tr)  # epoch 2 done → prune with the cosine rate at step 50
    assert len(hook.history) == 1
    assert hook.history[0]["death_rate"] == pytest.approx(0.005 + (0.5 - 0.005) / 2)


def test_state_dict_round_trip_gives_same_next_decision():
    a_model, b_model = _lstm(), _lstm()
    cfg = SparseConfig(0.67, "uniform", "threshold", "momentum", "momentum", 0.6)
    a = build_sparse_hook(a_model, cfg, seed=1)
    tr = _one_step(a_model, a)
    a.prune(tr, 0.5)
    state = a.state_dict()
    torch.save(state, "/dev/null")
    b = build_sparse_hook(b_model, cfg, seed=99)  # different seed: everything must come from the state
    b.load_state_dict(state)
    b_model.load_state_dict(a_model.state_dict())
    ca = a.prune(tr, 0.4)
    cb = b.prune(_FakeTrainer(**{**vars(tr), "model": b_model}), 0.4)
    for k in ca:
        assert torch.equal(ca[k]["removed"], cb[k]["removed"]) and torch.equal(ca[k]["grown"], cb[k]["grown"])
    assert a.masking.tau == b.masking.tau


def test_load_rejects_other_config():
    a = build_sparse_hook(_lstm(), SparseConfig(0.5), seed=0)
    b = build_sparse_hook(_lstm(), SparseConfig(0.6), seed=0)
    with pytest.raises(ValueError, match="sparse config"):
        b.load_state_dict(a.state_dict())


def test_snt_asgd_running_average_restarts_for_regrown_weights():
    """Hand-computed per-element averages through a prune-and-regrow step (SNT-ASGD)."""
    model = nn.Linear(4, 1, bias=False)
    cfg = SparseConfig(0.5, death="magnitude", growth="gradient", mask_gradients=False)  # grad set by hand
    hook = build_sparse_hook(model, cfg, seed=0)
    hook.masking.masks["weight"] = torch.tensor([[True, True, False, False]])
    hook.masking._fmasks.clear()
    tr = _fake_trainer(model)
    w = model.weight

    def fake_step(values):
        with torch.no_grad():
            w.copy_(torch.tensor([values]))
        hook.after_optimizer_step(tr)
        tr.averager.update(model)

    with torch.no_grad():
        w.zero_()
    tr.averager = WeightAverager(model)  # the NT-ASGD switch
    for t in (1, 2, 3):
        fake_step([t, 2 * t, 5.0, 5.0])  # indices 2, 3 are masked: stay 0
    torch.testing.assert_close(tr.averager.avg["weight"], torch.tensor([[2.0, 4.0, 0.0, 0.0]]))
    w.grad = torch.tensor([[0.0, 0.0, 0.1, -0.9]])
    changes = hook.prune(tr, 0.5)  # removes index 0 (|3| < |6|), regrows index 3 (largest |grad|)
    assert changes["weight"]["removed"].tolist() == [[True, False, False, False]]
    assert changes["weight"]["grown"].tolist() == [[False, False, False, True]]
    assert w.tolist() == [[0.0, 6.0, 0.0, 0.0]]
    with tr.averager.swap_in(model):  # evaluation right after the prune sees averages, 0 for index 0
        assert w.tolist() == [[0.0, 4.0, 0.0, 0.0]]
    fake_step([7.0, 8.0, 9.0, 10.0])
    fake_step([7.0, 12.0, 9.0, 20.0])
    # index 1 kept its average over all 5 steps; index 3 averages only since its regrowth
    torch.testing.assert_close(tr.averager.avg["weight"], torch.tensor([[0.0, 32 / 5, 0.0, 15.0]]))
    assert tr.averager.count["weight"].tolist() == [[2, 5, 5, 2]]
    assert hook.history[-1]["averaging"] is True


@pytest.mark.parametrize("mask_gradients", [True, False])
def test_mask_gradients_zeroes_inactive_grads_before_clipping(mask_gradients):
    model = _lstm()
    hook = build_sparse_hook(model, SparseConfig(0.6, growth="momentum", mask_gradients=mask_gradients), seed=0)
    x = torch.randint(0, 300, (5, 3))
    out, _ = model(x, model.init_state(3))
    out.sum().backward()
    tr = _fake_trainer(model)
    hook.after_optimizer_step(tr)
    g = model.rnns[0].weight_hh_l0.grad
    m = hook.masking.masks["rnns.0.weight_hh_l0"]
    assert bool((g[~m] == 0).all()) is mask_gradients
    # the momentum estimate always sees the dense gradient: (1 - beta) * g
    assert (hook.momenta["rnns.0.weight_hh_l0"][~m] != 0).any()
    hook.close()
    assert not hook._handles
