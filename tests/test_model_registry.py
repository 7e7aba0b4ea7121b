"""The model registry: a GRU language model added through it alone trains sparse and gets its LS."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from lsh_tune.data import load_corpus
from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import LSConfig, jacobian, lyapunov_spectrum, make_stepper, supports_analytic, \
    validation_tokens
from lsh_tune.models import (MODELS, ModelEntry, ModelSpec, RNNLanguageModel, StackedLSTM, TrainSpec, build_model,
                             get_model_entry, get_preset, mask_groups_by_name, register_model, unregister_model)
from lsh_tune.sparse import DEATH_RATE_FLOOR, SparseConfig, build_sparse_hook, cosine_death_rate, tensor_groups
from lsh_tune.train import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILT_INS = ("stacked_lstm", "rhn", "awd_lstm_mos")


class GRULM(RNNLanguageModel):
    """Embedding → a stack of ``nn.GRUCell`` layers → linear decoder (no dropout but on the embedding)."""

    def __init__(self, vocab_size: int, emb: int, hidden: tuple[int, ...], dropouti: float = 0.0) -> None:
        super().__init__()
        self.vocab_size, self.hidden_sizes, self.dropouti = vocab_size, tuple(hidden), dropouti
        self.encoder = nn.Embedding(vocab_size, emb)
        sizes = (emb, *hidden)
        self.cells = nn.ModuleList(nn.GRUCell(sizes[i], sizes[i + 1]) for i in range(len(hidden)))
        self.decoder = nn.Linear(hidden[-1], vocab_size)

    def init_state(self, batch_size):
        return tuple((self._zeros(batch_size, h),) for h in self.hidden_sizes)

    def embed(self, tokens):
        return F.dropout(self.encoder(tokens), self.dropouti, self.training)

    def step(self, state, x):
        out = []
        for cell, (h,) in zip(self.cells, state):
            x = cell(x, h)
            out.append((x,))
        return tuple(out)

    def forward(self, tokens, state):
        x = self.embed(tokens)
        outs = []
        for t in range(x.size(0)):
            state = self.step(state, x[t])
            outs.append(state[-1][0])
        return F.log_softmax(self.decoder(torch.stack(outs)), dim=-1), state


def _gru_presets() -> dict:
    def pair(emb, hidden, epochs):
        return ModelSpec("gru", emb, hidden, dropouts=(0.0, 0.1, 0.0, 0.0)), \
            TrainSpec(lr=10.0, batch_size=20, bptt=10, epochs=epochs)
    return {"tiny": pair(32, (32, 24), 2), "small": pair(200, (200, 200), 10), "paper": pair(650, (650, 650), 40)}


GRU_ENTRY = ModelEntry(
    "gru", GRULM, lambda spec, vocab: GRULM(vocab, spec.emb, spec.hidden, spec.dropouts[1]), _gru_presets(),
    mask_groups_by_name({"encoder": "embedding", "decoder": "output"},
                        {"weight_ih": "input", "weight_hh": "recurrent"}))


@pytest.fixture
def gru():
    """The GRU registered for one test only: every other test sees the three built-ins."""
    register_model(GRU_ENTRY)
    yield GRU_ENTRY
    unregister_model("gru")


@pytest.fixture(scope="module")
def ptb_2k():
    return load_corpus("ptb", max_tokens=2000)


# ---------------------------------------------------------------------------------------------- registry
def test_builtins_in_order_and_a_registered_model_joins_and_leaves():
    assert tuple(MODELS) == BUILT_INS and MODELS == BUILT_INS
    register_model(GRU_ENTRY)
    try:
        assert tuple(MODELS) == (*BUILT_INS, "gru") and "gru" in MODELS
        assert get_model_entry("gru") is GRU_ENTRY and get_preset("gru", "small") == GRU_ENTRY.presets["small"]
        with pytest.raises(LSHUsageError, match="registered already"):
            register_model(GRU_ENTRY)
        with pytest.raises(LSHUsageError, match="GRULM is registered already"):
            register_model(replace(GRU_ENTRY, name="gru2", presets={
                p: (replace(m, model="gru2"), t) for p, (m, t) in GRU_ENTRY.presets.items()}))
    finally:
        unregister_model("gru")
    assert tuple(MODELS) == BUILT_INS
    with pytest.raises(LSHUsageError, match="choose one of: stacked_lstm, rhn, awd_lstm_mos$"):
        get_preset("gru", "tiny")


def test_the_registry_says_which_models_have_a_cell_state_and_hc_is_refused_without_one(gru):
    from lsh_tune.models import model_has_cell_state
    from lsh_tune.search.config import SearchConfig

    assert {m: model_has_cell_state(m) for m in MODELS} == {"stacked_lstm": True, "rhn": False, "awd_lstm_mos": True,
                                                            "gru": False}
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    GRU_ENTRY.__dict__.pop("has_cell_state", None)  # asked again: builds the tiny model ...
    assert not GRU_ENTRY.has_cell_state
    assert torch.equal(torch.rand(2), expected)  # ... without moving the global RNG
    for model in ("stacked_lstm", "awd_lstm_mos"):
        assert SearchConfig(model=model, ls_state="hc").ls_state == "hc"
    with pytest.raises(LSHUsageError, match="ls_state='hc' does not apply to model='gru': its state has no cell state"):
        SearchConfig(model="gru", ls_state="hc", metric="loss")


def test_entries_are_validated():
    with pytest.raises(LSHUsageError, match="exactly paper, small, tiny"):
        replace(GRU_ENTRY, presets={"tiny": GRU_ENTRY.presets["tiny"]})
    with pytest.raises(LSHUsageError, match="describes model 'rhn'"):
        replace(GRU_ENTRY, presets={**GRU_ENTRY.presets, "tiny": get_preset("rhn", "tiny")})
    with pytest.raises(TypeError, match="subclass of RNNLanguageModel"):
        replace(GRU_ENTRY, cls=nn.GRU)
    with pytest.raises(LSHUsageError, match="mask group='attention'"):
        mask_groups_by_name({"attn": "attention"})


def test_builtin_mask_groups_are_unchanged():
    def groups(name):
        torch.manual_seed(0)
        return {k: sorted(v) for k, v in tensor_groups(build_model(get_preset(name, "tiny")[0], 50)).items()}

    lstm = lambda n: {f"rnns.{i}.weight_{w}_l0": [g] for i in range(n) for w, g in (("ih", "input"),
                                                                                     ("hh", "recurrent"))}
    assert groups("stacked_lstm") == {"encoder.weight": ["embedding"], **lstm(2), "decoder.weight": ["output"]}
    assert groups("awd_lstm_mos") == {"encoder.weight": ["embedding", "output"], **lstm(3),
                                      "prior.weight": ["output"], "latent.weight": ["output"]}
    assert groups("rhn") == {"encoder.weight": ["embedding", "output"], "input_proj.weight": ["input"],
                             **{f"highway.{i}.weight": ["recurrent"] for i in range(3)}}
    assert tensor_groups(nn.Linear(3, 2)) == {"weight": {"other"}}  # no entry: every matrix is "other"


def test_subclasses_find_their_entry_and_lose_the_closed_form_with_their_own_step():
    class Wider(StackedLSTM):
        pass

    class OwnStep(StackedLSTM):
        def step(self, state, x):
            return super().step(state, x)

    assert supports_analytic(Wider(50, 8, (8,))) and not supports_analytic(OwnStep(50, 8, (8,)))
    assert set(tensor_groups(OwnStep(50, 8, (8,)))["rnns.0.weight_hh_l0"]) == {"recurrent"}


# ---------------------------------------------------------------------------------------------- (a) sparse
def test_registered_gru_trains_sparse_with_exact_density(gru, ptb_2k):
    ms, ts = get_preset("gru", "tiny")
    torch.manual_seed(0)
    model = build_model(ms, len(ptb_2k.vocab))
    assert isinstance(model, GRULM)
    cells = {f"cells.{i}.weight_{w}": {g} for i in range(2) for w, g in (("ih", "input"), ("hh", "recurrent"))}
    assert tensor_groups(model) == {"encoder.weight": {"embedding"}, **cells, "decoder.weight": {"output"}}
    hook = build_sparse_hook(model, SparseConfig(0.67, "ER", "magnitude", "random", "nonzeros", 0.5), seed=0)
    masking = hook.masking
    assert masking.total == sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2)
    assert masking.active() == masking.target == round(0.33 * masking.total)
    trainer = Trainer(model, ptb_2k, ts, seed=0, hooks=[hook])  # 2 planned epochs: prune after the first
    metrics = trainer.fit(epochs=1)
    assert len(metrics) == 1 and np.isfinite(metrics[0]["val_loss"])
    (event,) = hook.history
    assert event["epoch"] == 1 and event["step"] == trainer.batches_per_epoch == trainer.total_steps // 2
    assert event["death_rate"] == pytest.approx(cosine_death_rate(event["step"], trainer.total_steps, 0.5,
                                                                  DEATH_RATE_FLOOR))
    assert sum(event["removed"].values()) == sum(event["grown"].values()) > 0
    assert masking.active() == masking.target and sum(int(m.sum()) for m in masking.masks.values()) == masking.target
    params = dict(model.named_parameters())
    for name, mask in masking.masks.items():
        assert (params[name].detach()[~mask] == 0).all(), name
    recurrent_only = build_sparse_hook(build_model(ms, 50), SparseConfig(0.5, masked=("recurrent",)), seed=0)
    assert recurrent_only.masking.names == ["cells.0.weight_hh", "cells.1.weight_hh"]


# ---------------------------------------------------------------------------------------------- (b) the LS
def _gru_cell_jacobians(cell: nn.GRUCell, h, x):
    """Hand-derived d h'/d h (B, H, H) and d h'/d x (B, H, I) of torch's GRUCell, and h' itself.

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + ... ), n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
    h' = (1 − z) n + z h.
    """
    w_ir, w_iz, w_in = cell.weight_ih.chunk(3)
    w_hr, w_hz, w_hn = cell.weight_hh.chunk(3)
    i_r, i_z, i_n = F.linear(x, cell.weight_ih, cell.bias_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, cell.weight_hh, cell.bias_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    col = lambda v: v[:, :, None]

    def through_gates(w_r, w_z, w_n):
        """(1 − z) dn/dv + (h − n) dz/dv for an input v entering r, z by w_r, w_z and n's pre-activation by w_n."""
        dr, dz = col(r * (1 - r)) * w_r, col(z * (1 - z)) * w_z
        dn = col(1 - n * n) * (w_n + col(h_n) * dr)
        return col(1 - z) * dn + col(h - n) * dz

    j_h = through_gates(w_hr, w_hz, col(r) * w_hn) + torch.diag_embed(z)
    j_x = through_gates(w_ir, w_iz, w_in)
    return j_h, j_x, (1 - z) * n + z * h


def _gru_stack_jacobian(model: GRULM, state, x):
    """J (B, N, N) of the whole step: block lower-triangular, [[A_1, 0], [G_2 A_1, A_2]] for two layers."""
    n = sum(model.hidden_sizes)
    j = x.new_zeros((x.shape[0], n, n))
    pos, prev_rows = 0, None
    for cell, (h,) in zip(model.cells, state):
        a, g, x = _gru_cell_jacobians(cell, h, x)
        rows = slice(pos, pos + h.shape[-1])
        j[:, rows, rows] = a
        if prev_rows is not None:
            j[:, rows, :pos] = g @ j[:, prev_rows, :pos]
        prev_rows, pos = rows, pos + h.shape[-1]
    return j


def test_registered_gru_gets_an_autograd_ls_that_is_right(gru, ptb_2k):
    torch.manual_seed(0)
    model = build_model(get_preset("gru", "tiny")[0], len(ptb_2k.vocab)).double().eval()
    assert not supports_analytic(model)
    gen = torch.Generator().manual_seed(1)
    state = tuple((torch.randn(3, h, dtype=torch.float64, generator=gen) * 0.7,) for h in model.hidden_sizes)
    x = torch.randn(3, 32, dtype=torch.float64, generator=gen)
    j, new = jacobian(model, state, x)  # "analytic" requested: the registry has none, autograd answers
    torch.testing.assert_close(j, _gru_stack_jacobian(model, state, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(new[-1][0], model.step(state, x)[-1][0], rtol=0, atol=1e-14)
    jac, _ = make_stepper(model, dtype=torch.float64)(state, x)
    assert [blk.n for blk in jac.diagonal_blocks()] == [32, 24]

    cfg = LSConfig(k=2, steps=20, warmup=5, dtype="float64")
    tokens = validation_tokens(ptb_2k, k=2, length=cfg.total_steps)
    ls = lyapunov_spectrum(model, tokens, cfg)
    assert ls.shape == (56,) and np.all(np.diff(ls) <= 0) and np.isfinite(ls).all()
    # Σ_i λ_i = mean over sequences and averaged steps of log|det J_t| (Q is orthogonal), J by hand
    with torch.no_grad():
        xs = model.embed(tokens).double()
        s, logdet = model.init_state(2), 0.0
        for t in range(cfg.total_steps):
            if t >= cfg.warmup:
                logdet += torch.linalg.slogdet(_gru_stack_jacobian(model, s, xs[t])).logabsdet.sum().item()
            s = model.step(s, xs[t])
    assert ls.sum() == pytest.approx(logdet / (cfg.k * cfg.steps), rel=0, abs=1e-9)
    joint = lyapunov_spectrum(model, tokens, replace(cfg, qr="joint"))
    assert joint.sum() == pytest.approx(ls.sum(), rel=0, abs=1e-9)
    np.testing.assert_allclose(lyapunov_spectrum(model, tokens, replace(cfg, top=5)), ls[:5], rtol=0, atol=1e-9)
