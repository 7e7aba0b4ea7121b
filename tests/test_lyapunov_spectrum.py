"""The QR algorithm (Eq. 1): linear RNNs with known exponents, paths agreeing, K=2 vs K=10, layered vs joint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lsh_tune.data import load_corpus
from lsh_tune.errors import LSHUsageError
from lsh_tune.lyapunov import LSConfig, ls_summary, lyapunov_spectrum, reference_spectrum, validation_tokens
from lsh_tune.lyapunov.spectrum import qr_exponents
from lsh_tune.models import build_model, get_preset

from ls_models import normal_matrix_with_known_exponents, VOCAB, LinearRNN, LinearStack, _orthogonal, _prune, _tokens, _train_tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_linear_rnn_normal_matrix_gives_log_abs_eigenvalues():
    # normal A = U diag(blocks) U^T: real eigenvalues and 2x2 rotation-scaling blocks (complex pairs)
    a, eig = normal_matrix_with_known_exponents()
    model = LinearRNN(a)
    for top in (None, 4):
        cfg = LSConfig(k=2, steps=40, warmup=120, dtype="float64", top=top)
        ls = lyapunov_spectrum(model, _tokens(160), cfg)
        expected = -np.sort(-eig)[: ls.size]
        np.testing.assert_allclose(ls, expected, atol=1e-4, rtol=0)


def test_scaled_orthogonal_gives_n_equal_exponents():
    s = 0.8
    model = LinearRNN(s * _orthogonal(10, 2))
    ls = lyapunov_spectrum(model, _tokens(35), LSConfig(k=2, steps=35, warmup=0, dtype="float64"))
    np.testing.assert_allclose(ls, np.full(10, np.log(s)), atol=1e-10)


def test_linear_stack_gives_the_union_of_the_layers_exponents_in_both_orders():
    a = _orthogonal(4, 3) @ torch.diag(torch.tensor([1.5, 0.9, 0.6, 0.3], dtype=torch.float64)) @ _orthogonal(4, 3).T
    d = _orthogonal(3, 4) @ torch.diag(torch.tensor([1.2, 0.8, 0.4], dtype=torch.float64)) @ _orthogonal(3, 4).T
    expected = np.log([1.5, 1.2, 0.9, 0.8, 0.6, 0.4, 0.3])
    model = LinearStack(a, d)
    for qr in ("layered", "joint"):
        for top in (None, 3):
            cfg = LSConfig(k=2, steps=40, warmup=150, dtype="float64", top=top, qr=qr)
            ls = lyapunov_spectrum(model, _tokens(190), cfg)
            np.testing.assert_allclose(ls, expected[: ls.size], atol=1e-4, rtol=0, err_msg=f"{qr} top={top}")


def test_layered_needs_a_block_lower_triangular_jacobian():
    model = LinearStack(0.5 * _orthogonal(4, 1), 0.5 * _orthogonal(3, 2), feedback=True)
    with pytest.raises(LSHUsageError, match="qr='joint'"):
        lyapunov_spectrum(model, _tokens(10), LSConfig(k=2, steps=5, warmup=0, dtype="float64"))
    ls = lyapunov_spectrum(model, _tokens(10), LSConfig(k=2, steps=5, warmup=0, dtype="float64", qr="joint"))
    assert ls.shape == (7,) and np.isfinite(ls).all()


@pytest.mark.parametrize("qr", ["layered", "joint"])
@pytest.mark.parametrize("name,state", [("stacked_lstm", "h"), ("stacked_lstm", "hc"), ("rhn", "h"),
                                        ("awd_lstm_mos", "h")])
def test_engine_matches_straightforward_computation(name, state, qr):
    # layered: the straightforward side runs one QR over the whole J with the layers ordered top first,
    # so this also checks that the per-layer split is exact
    torch.manual_seed(0)
    model = build_model(get_preset(name, "tiny")[0], 60)
    tokens = torch.randint(60, (8, 2), generator=torch.Generator().manual_seed(3))
    cfg = LSConfig(k=2, steps=5, warmup=2, state=state, dtype="float64", qr=qr)
    full = lyapunov_spectrum(model, tokens, cfg)
    np.testing.assert_allclose(full, reference_spectrum(model, tokens, cfg), atol=1e-6, rtol=0)
    # top-k on the same trajectory: the top columns of the full QR (before sorting) are the top-k QR
    top_cfg = LSConfig(k=2, steps=5, warmup=2, state=state, dtype="float64", top=full.size, qr=qr)
    np.testing.assert_allclose(lyapunov_spectrum(model, tokens, top_cfg), full, atol=1e-8, rtol=0)
    top5 = LSConfig(k=2, steps=5, warmup=2, state=state, dtype="float64", top=5, qr=qr)
    np.testing.assert_allclose(lyapunov_spectrum(model, tokens, top5), reference_spectrum(model, tokens, top5),
                               atol=1e-6, rtol=0)
    f32 = lyapunov_spectrum(model, tokens, LSConfig(k=2, steps=5, warmup=2, state=state, qr=qr))
    np.testing.assert_allclose(f32[:10], full[:10], atol=1e-3)


def test_eval_mode_is_restored_and_no_dropout():
    torch.manual_seed(0)
    spec = get_preset("rhn", "small")[0]  # has dropouts
    model = build_model(spec, 40).train()
    tokens = torch.randint(40, (12, 2))
    cfg = LSConfig(k=2, steps=8, warmup=4, top=8)
    a = lyapunov_spectrum(model, tokens, cfg)
    assert model.training
    np.testing.assert_array_equal(a, lyapunov_spectrum(model, tokens, cfg))


def test_pruned_rows_give_minus_inf_not_nan():
    torch.manual_seed(0)
    model = build_model(get_preset("stacked_lstm", "tiny")[0], 30)
    with torch.no_grad():  # unit 5 of layer 0 feeds nothing (all its outgoing weights pruned): J e_5 = 0
        model.rnns[0].weight_hh_l0[:, 5] = 0
        model.rnns[1].weight_ih_l0[:, 5] = 0
    ls = lyapunov_spectrum(model, torch.randint(30, (20, 2)), LSConfig(k=2, steps=10, warmup=0))
    assert np.isneginf(ls).sum() >= 1 and not np.isnan(ls).any()
    assert ls_summary(ls)["neg_inf"] >= 1


@pytest.mark.parametrize("field,value,exc", [("k", 0, LSHUsageError), ("steps", 0, LSHUsageError),
                                             ("warmup", -1, LSHUsageError), ("top", 0, LSHUsageError),
                                             ("state", "c", LSHUsageError), ("dtype", "half", LSHUsageError),
                                             ("jacobian", "numeric", LSHUsageError), ("k", 2.0, TypeError),
                                             ("steps", True, TypeError)])
def test_config_rejects_bad_values(field, value, exc):
    with pytest.raises(exc, match=field):
        LSConfig(**{field: value})


def test_inputs_are_checked_before_computing():
    model = build_model(get_preset("rhn", "tiny")[0], 30)
    with pytest.raises(LSHUsageError, match="rows"):
        lyapunov_spectrum(model, torch.zeros(10, 2, dtype=torch.long), LSConfig(steps=35, warmup=0))
    with pytest.raises(LSHUsageError, match="k=3"):
        lyapunov_spectrum(model, torch.zeros(40, 2, dtype=torch.long), LSConfig(k=3, steps=35, warmup=0))
    with pytest.raises(LSHUsageError, match="top=65"):
        lyapunov_spectrum(model, torch.zeros(40, 2, dtype=torch.long), LSConfig(steps=35, warmup=0, top=65))


# ---------------------------------------------------------------------------------------------
# A tiny model trained on a real PTB slice: K = 2 vs K = 10 (paper Table 3)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ptb():
    return load_corpus("ptb", max_tokens=60_000)


def _pair_stats(model, tokens, cfg: LSConfig) -> dict[str, np.ndarray]:
    """Each summary statistic of every K = 2 estimate that the ``tokens``' columns allow: the
    per-sequence sums Σ_t log|r_ii| of one K-column run, averaged over each pair of columns."""
    from itertools import combinations

    from lsh_tune.lyapunov.spectrum import _finish, cast_state, make_stepper, state_size

    with torch.no_grad():
        xs = model.embed(tokens[: cfg.total_steps, : cfg.k]).to(cfg.torch_dtype)
        state = cast_state(model.init_state(cfg.k), cfg.torch_dtype)
    step = make_stepper(model, convention=cfg.state, dtype=cfg.torch_dtype, method=cfg.jacobian)
    logs = qr_exponents(step, state, xs, state_size(model, cfg.state), cfg)     # (K, N), unsorted
    pair_cfg = LSConfig(k=2, steps=cfg.steps, warmup=cfg.warmup, qr=cfg.qr)
    stats = [ls_summary(_finish(logs[list(p)], pair_cfg)) for p in combinations(range(cfg.k), 2)]
    return {key: np.array([s[key] for s in stats]) for key in ("max", "mean", "variance")}


def test_k2_and_k10_and_layered_and_joint_agree_at_table3_scale(ptb):
    """Paper Table 3: K = 2 sequences estimate the spectrum's statistics as K = 10 do, up to the
    sampling noise of a two-sequence estimate, and that noise is far below the gap between two
    differently pruned models (max, mean). The noise is measured here, in this run, on this CPU:
    the spread of the statistic over all 45 pairs of the K = 10 run's sequences. A fixed ratio
    is not used: the trained model itself differs between CPUs (float32 BLAS kernels), and with
    it the statistics (the variance gap below is 0.029 on one machine, within 3 pair-σ)."""
    dense = _train_tiny(ptb)
    models = [_prune(dense, 0.3, by_magnitude=True, seed=0), _prune(dense, 0.8, by_magnitude=False, seed=1)]
    valid = ptb.valid.clamp(max=VOCAB - 1)
    k10_cfg = LSConfig(k=10, steps=35, warmup=10, qr="joint")
    spectra, sigma = [], []          # per model: K=10 joint, K=2 joint, K=2 layered (the default)
    for m in models:
        spectra.append([lyapunov_spectrum(m, validation_tokens(valid, k, 45), LSConfig(k=k, steps=35, warmup=10, qr=qr))
                        for k, qr in ((10, "joint"), (2, "joint"), (2, "layered"))])
        sigma.append({key: v.std() for key, v in _pair_stats(m, validation_tokens(valid, 10, 45), k10_cfg).items()})
    stats = [[ls_summary(s) for s in per_model] for per_model in spectra]
    for (s10, s2, _), sig in zip(stats, sigma):
        for key in ("max", "mean", "variance"):
            # 4 σ: a two-sided normal tail of 6e-5; the K=2 columns are 2 of the 10, so the true
            # spread of K2 − K10 is σ·√(1 − 2/10), below σ.
            assert abs(s2[key] - s10[key]) <= 4 * sig[key], (key, s2[key], s10[key], sig[key])
    for key in ("max", "mean"):      # K = 2 separates the two models by far more than its noise
        between = abs(stats[0][0][key] - stats[1][0][key])
        assert between > 10 * (sigma[0][key] + sigma[1][key]), (key, between, sigma)
    between = np.abs(spectra[0][0] - spectra[1][0]).mean()
    for k10, joint, layered in spectra:
        # the layered split moves single exponents (the leading one by up to 3 % here), not the spectrum
        assert np.abs(layered - joint).mean() < between / 10
        # Σ_i λ_i = mean log|det J| whatever the order of the state: equal up to float32 roundoff of
        # the 35 Jacobians' QR (≈ 1e-6 per exponent × N = 128), and the two paths do differ
        assert abs(layered.sum() - joint.sum()) < 1e-3 and np.abs(layered - joint).max() > 1e-4
