"""The fast spectrum (``qr="cholesky"``, issue 19 item 2) against Householder ``layered``, the float64
straightforward computation, linear RNNs with known exponents, dead units and real PTB-trained models.

Tolerances are the ones ``tests/test_lyapunov_spectrum.py`` holds ``layered`` to: float64 engine vs
:func:`reference_spectrum` 1e-6, float32 vs float64 leading 10 exponents 1e-3, known linear spectra 1e-4.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lsh_tune.data import load_corpus
from lsh_tune.lyapunov import LSConfig, ls_summary, lyapunov_spectrum, reference_spectrum, validation_tokens
from lsh_tune.models import build_model, get_preset

from ls_models import normal_matrix_with_known_exponents, VOCAB, LinearRNN, LinearStack, _orthogonal, _prune, _tokens, _train_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name,state", [("stacked_lstm", "h"), ("stacked_lstm", "hc"), ("rhn", "h"),
                                        ("awd_lstm_mos", "h"), ("awd_lstm_mos", "hc")])
def test_cholesky_matches_straightforward_computation_and_layered(name, state):
    torch.manual_seed(0)
    model = build_model(get_preset(name, "tiny")[0], 60)
    tokens = torch.randint(60, (8, 2), generator=torch.Generator().manual_seed(3))
    for top in (None, 5):
        cfg = LSConfig(k=2, steps=5, warmup=2, state=state, dtype="float64", top=top, qr="cholesky")
        stats = {}
        fast = lyapunov_spectrum(model, tokens, cfg, stats=stats)
        np.testing.assert_allclose(fast, reference_spectrum(model, tokens, cfg), atol=1e-6, rtol=0)
        layered = lyapunov_spectrum(model, tokens, LSConfig(**{**cfg.to_dict(), "qr": "layered"}))
        np.testing.assert_allclose(fast, layered, atol=1e-9, rtol=0)  # the same exponents, another QR
        layers = len(model.init_state(1))
        assert stats == {"qr_steps": 2 * layers * 7, "float64_gram": 0, "householder_fallbacks": 0}
        f32 = lyapunov_spectrum(model, tokens, LSConfig(**{**cfg.to_dict(), "dtype": "float32"}))
        np.testing.assert_allclose(f32[:10], fast[:10], atol=1e-3)


def test_cholesky_on_linear_rnns_with_known_exponents():
    a, eig = normal_matrix_with_known_exponents()
    eig = -np.sort(-eig)
    for top in (None, 4):
        cfg = LSConfig(k=2, steps=40, warmup=120, dtype="float64", top=top, qr="cholesky")
        ls = lyapunov_spectrum(LinearRNN(a), _tokens(160), cfg)
        np.testing.assert_allclose(ls, eig[: ls.size], atol=1e-4, rtol=0)
    ls = lyapunov_spectrum(LinearRNN(0.8 * _orthogonal(10, 2)), _tokens(35),
                           LSConfig(k=2, steps=35, warmup=0, dtype="float64", qr="cholesky"))
    np.testing.assert_allclose(ls, np.full(10, np.log(0.8)), atol=1e-10)
    # two linear layers: the union of the layers' exponents; float32 too (Gram matrix in float32)
    a = _orthogonal(4, 3) @ torch.diag(torch.tensor([1.5, 0.9, 0.6, 0.3], dtype=torch.float64)) @ _orthogonal(4, 3).T
    d = _orthogonal(3, 4) @ torch.diag(torch.tensor([1.2, 0.8, 0.4], dtype=torch.float64)) @ _orthogonal(3, 4).T
    expected = np.log([1.5, 1.2, 0.9, 0.8, 0.6, 0.4, 0.3])
    for dtype, tol in (("float64", 1e-4), ("float32", 2e-4)):
        for top in (None, 3):
            cfg = LSConfig(k=2, steps=40, warmup=150, dtype=dtype, top=top, qr="cholesky")
            ls = lyapunov_spectrum(LinearStack(a, d), _tokens(190), cfg)
            np.testing.assert_allclose(ls, expected[: ls.size], atol=tol, rtol=0, err_msg=f"{dtype} top={top}")


def test_cholesky_needs_a_block_lower_triangular_jacobian_like_layered():
    from lsh_tune.errors import LSHUsageError

    model = LinearStack(0.5 * _orthogonal(4, 1), 0.5 * _orthogonal(3, 2), feedback=True)
    with pytest.raises(LSHUsageError, match="qr='joint'"):
        lyapunov_spectrum(model, _tokens(10), LSConfig(k=2, steps=5, warmup=0, dtype="float64", qr="cholesky"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dead_unit_gives_minus_inf_like_layered(dtype):
    """J e_5 = 0 at every step: −inf from the first step's exact zero column (warm-up 0), and from then on
    one direction whose r_ii is roundoff, log ε + O(1) per step in both QRs (not compared: noise). That
    roundoff can itself come out exactly 0 in float32 (−inf: seen with `cholesky` on an AMD EPYC with
    AVX-512, not on an Intel Xeon with AVX-512), so it is counted below the floor, −inf or not."""
    torch.manual_seed(0)
    model = build_model(get_preset("stacked_lstm", "tiny")[0], 30)
    with torch.no_grad():  # unit 5 of layer 0 feeds nothing: J e_5 = 0, an exact zero column of Z at the first step
        model.rnns[0].weight_hh_l0[:, 5] = 0
        model.rnns[1].weight_ih_l0[:, 5] = 0
    tokens = torch.randint(30, (20, 2), generator=torch.Generator().manual_seed(1))
    for top in (None, 70):
        base = dict(k=2, steps=10, warmup=0, dtype=dtype, top=top)
        layered = lyapunov_spectrum(model, tokens, LSConfig(**base, qr="layered"))
        stats = {}
        fast = lyapunov_spectrum(model, tokens, LSConfig(**base, qr="cholesky"), stats=stats)
        for ls in (fast, layered):  # the dead direction is −inf; the roundoff one may be too
            assert np.isneginf(ls).sum() in ((1, 2) if top is None else (0,))
            assert np.isneginf(ls[-1]) if top is None else True
        assert not np.isnan(fast).any() and stats["householder_fallbacks"] >= 1
        floor = 0.5 * np.log(torch.finfo(getattr(torch, dtype)).eps)  # −8.0 (float32), −18.0 (float64)
        assert (fast < floor).sum() == (layered < floor).sum() == (2 if top is None else 0)
        ok = layered > floor
        np.testing.assert_allclose(fast[ok], layered[ok], atol=1e-3 if dtype == "float32" else 1e-9, rtol=0)


def test_diverged_model_gives_nan_like_layered():
    torch.manual_seed(0)
    model = build_model(get_preset("stacked_lstm", "tiny")[0], 30)
    with torch.no_grad():
        model.rnns[1].weight_hh_l0[3, 7] = float("nan")
    tokens = torch.randint(30, (12, 2), generator=torch.Generator().manual_seed(2))
    cfg = dict(k=2, steps=6, warmup=2)
    layered = lyapunov_spectrum(model, tokens, LSConfig(**cfg, qr="layered"))
    fast = lyapunov_spectrum(model, tokens, LSConfig(**cfg, qr="cholesky"))
    assert np.isnan(layered).any()
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(layered))


@pytest.fixture(scope="module")
def ptb():
    return load_corpus("ptb", max_tokens=60_000)


def test_cholesky_equals_layered_on_ptb_trained_and_pruned_models(ptb):
    """The Table 3 setting (K = 2, T = 35, warm-up 10, float32) on PTB-trained tiny stacks, dense and pruned."""
    dense = _train_tiny(ptb)
    models = [dense, _prune(dense, 0.3, by_magnitude=True, seed=0), _prune(dense, 0.8, by_magnitude=False, seed=1)]
    tokens = validation_tokens(ptb.valid.clamp(max=VOCAB - 1), 2, 45)
    for m in models:
        # h: every exponent within 1e-3 (measured: ≤ 7e-5)
        base = dict(k=2, steps=35, warmup=10)
        layered = lyapunov_spectrum(m, tokens, LSConfig(**base, qr="layered"))
        fast = lyapunov_spectrum(m, tokens, LSConfig(**base, qr="cholesky"))
        np.testing.assert_allclose(fast, layered, atol=1e-3, rtol=0)
        # hc in float32: both QRs sit within 1e-2 of float64 in the most contracting directions (λ ≈ −10:
        # float32 roundoff of the Jacobians and the products), the leading exponents within 1e-6
        base = dict(k=2, steps=35, warmup=10, state="hc")
        layered = lyapunov_spectrum(m, tokens, LSConfig(**base, qr="layered"))
        stats = {}
        fast = lyapunov_spectrum(m, tokens, LSConfig(**base, qr="cholesky"), stats=stats)
        ref = lyapunov_spectrum(m, tokens, LSConfig(**base, qr="layered", dtype="float64"))
        np.testing.assert_allclose(fast[:10], layered[:10], atol=1e-6, rtol=0)
        for ls in (fast, layered):
            np.testing.assert_allclose(ls, ref, atol=2e-2, rtol=0)
            for key in ("max", "mean"):
                assert abs(ls_summary(ls)[key] - ls_summary(ref)[key]) < 1e-3, key
            # the variance weighs the noisy contracting tail by |λ − mean| ≈ 8: within 0.1 % of float64's
            # (measured 2e-4 of 4.93 on an AMD EPYC with AVX-512; an absolute 1e-3 held on an Intel Xeon only)
            assert abs(ls_summary(ls)["variance"] - ls_summary(ref)["variance"]) < 1e-3 * ls_summary(ref)["variance"]
        assert stats["float64_gram"] > stats["qr_steps"] // 2  # hc breaks float32 Cholesky down


def test_cholesky_is_a_choice_of_the_config():
    from lsh_tune.errors import LSHUsageError

    assert LSConfig(qr="cholesky").qr == "cholesky"
    with pytest.raises(LSHUsageError, match="qr"):
        LSConfig(qr="householder")
