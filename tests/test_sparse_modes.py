"""Death, growth and redistribution rules on hand-built tensors: *which* weights go and come."""
from __future__ import annotations

import math

import pytest
import torch

from lsh_tune.sparse import (allocate, cosine_death_rate, death_global_magnitude, death_magnitude, death_set,
                             death_threshold, er_densities, exact_counts, grow, n_to_remove,
                             redistribution_shares)


def _idx(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask.reshape(-1)).squeeze(1).tolist()


W = torch.tensor([[0.5, -0.1, 0.0, 0.3],
                  [-0.7, 0.2, -0.05, 0.9]])
M = torch.tensor([[True, True, False, True],
                  [True, True, True, True]])  # flat index 2 is inactive


def test_magnitude_removes_smallest_active_abs():
    removed = death_magnitude(W, M, 3)
    assert _idx(removed) == [1, 5, 6]  # |-0.1|, |0.2|, |-0.05|; inactive 0.0 is never chosen
    assert not (removed & ~M).any()


def test_magnitude_ties_break_by_index():
    w = torch.tensor([0.1, -0.1, 0.1, 0.5])
    assert _idx(death_magnitude(w, torch.ones(4, dtype=torch.bool), 2)) == [0, 1]


def test_set_removes_smallest_positive_and_most_negative():
    removed = death_set(W, M, 4)
    # 2 smallest non-negative active: 0.2 (5), 0.3 (3); 2 most negative: -0.7 (4), -0.1 (1)
    assert _idx(removed) == [1, 3, 4, 5]


def test_set_paper_removes_smallest_positive_and_negatives_closest_to_zero():
    removed = death_set(W, M, 4, negatives="closest_to_zero")
    # 2 smallest non-negative active: 0.2 (5), 0.3 (3); 2 negatives closest to 0: -0.05 (6), -0.1 (1)
    assert _idx(removed) == [1, 3, 5, 6]
    with pytest.raises(ValueError, match="closest_to_zero"):
        death_set(W, M, 4, negatives="largest")


def test_set_odd_count_and_regrown_zero_goes_first():
    w = torch.tensor([0.0, 0.4, -0.3, -0.9, 0.8])
    removed = death_set(w, torch.ones(5, dtype=torch.bool), 3)
    assert _idx(removed) == [0, 1, 3]  # ceil(3/2)=2 non-negatives (0.0, 0.4), 1 most negative (-0.9)


def test_set_one_sided_tensor_takes_rest_from_other_side():
    w = torch.tensor([0.1, 0.2, 0.3, -0.5])
    removed = death_set(w, torch.ones(4, dtype=torch.bool), 4)
    assert removed.all()
    w = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert _idx(death_set(w, torch.ones(4, dtype=torch.bool), 2)) == [0, 1]


def test_global_magnitude_one_threshold_over_tensors():
    weights = {"a": torch.tensor([0.9, 0.01, 0.5]), "b": torch.tensor([[0.02, -0.03], [0.8, 0.04]])}
    masks = {"a": torch.tensor([True, True, True]), "b": torch.tensor([[True, True], [True, False]])}
    removed = death_global_magnitude(weights, masks, 3)
    assert _idx(removed["a"]) == [1]          # 0.01
    assert _idx(removed["b"]) == [0, 1]       # 0.02, -0.03; 0.04 is inactive
    assert int(sum(r.sum() for r in removed.values())) == 3


def test_threshold_adapts_tau_and_removes_below_it():
    torch.manual_seed(0)
    weights = {"a": torch.randn(100, 50) * 0.1, "b": torch.randn(300) * 0.1}
    masks = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    n_active = sum(m.numel() for m in masks.values())
    expected = n_to_remove(0.3, n_active)
    removed, tau = death_threshold(weights, masks, expected, 1e-3)
    count = int(sum(r.sum() for r in removed.values()))
    assert abs(count - expected) <= 0.02 * expected
    for k in weights:  # exactly the weights below the final threshold
        assert torch.equal(removed[k], weights[k].abs() < tau)
    assert tau > 1e-3  # doubled from its start
    # the next call starts from the adapted tau and stays close
    removed2, tau2 = death_threshold(weights, masks, expected, tau)
    assert tau2 == pytest.approx(tau)


def test_threshold_halves_when_too_many():
    w = {"a": torch.tensor([0.001, 0.002, 0.004, 0.008, 0.5, 0.6, 0.7, 0.8])}
    m = {"a": torch.ones(8, dtype=torch.bool)}
    removed, tau = death_threshold(w, m, 2, 1.0, tolerance=0.0)
    assert _idx(removed["a"]) == [0, 1]
    assert 0.002 < tau <= 0.004


def test_random_growth_avoids_active_and_just_dropped():
    mask = torch.tensor([True, False, False, False, True, False])
    dropped = torch.tensor([False, True, False, False, False, False])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        grown = grow(mask, dropped, 3, generator=g)
        assert _idx(grown) and sorted(_idx(grown)) == [2, 3, 5]


def test_random_growth_is_uniform_and_seeded():
    mask = torch.zeros(10, dtype=torch.bool)
    no_drop = torch.zeros(10, dtype=torch.bool)
    a = grow(mask, no_drop, 3, generator=torch.Generator().manual_seed(1))
    b = grow(mask, no_drop, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    hits = torch.zeros(10)
    g = torch.Generator().manual_seed(2)
    for _ in range(2000):
        hits += grow(mask, no_drop, 3, generator=g).float()
    assert (hits / 2000 - 0.3).abs().max() < 0.05


def test_growth_falls_back_to_dropped_when_layer_is_full():
    mask = torch.tensor([True, True, False, False])
    dropped = torch.tensor([False, False, True, False])
    grown = grow(mask, dropped, 2, generator=torch.Generator().manual_seed(0))
    assert _idx(grown) == [2, 3]


@pytest.mark.parametrize("kind", ["momentum", "gradient"])
def test_scored_growth_takes_largest_abs_among_inactive(kind):
    mask = torch.tensor([True, False, False, False, False, False])
    dropped = torch.tensor([False, False, False, False, False, True])
    score = torch.tensor([9.0, -0.1, 3.0, -2.0, 0.5, 8.0]).abs()  # |momentum| or |gradient|
    grown = grow(mask, dropped, 2, score=score)
    assert _idx(grown) == [2, 3]  # 9.0 is active, 8.0 was just dropped


def test_redistribution_shares_per_mode():
    weights = {"a": torch.tensor([1.0, -3.0, 100.0]), "b": torch.tensor([0.5, 0.5, 0.5, 0.5])}
    masks = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, True, True, True])}
    momenta = {"a": torch.tensor([0.2, 0.4, 9.0]), "b": torch.tensor([-0.1, 0.1, 0.1, 0.1])}
    assert redistribution_shares("magnitude", weights, masks) == pytest.approx({"a": 2.0, "b": 0.5})
    assert redistribution_shares("nonzeros", weights, masks) == {"a": 2.0, "b": 4.0}
    assert redistribution_shares("momentum", weights, masks, momenta) == pytest.approx({"a": 0.3, "b": 0.1})
    assert redistribution_shares("none", weights, masks) is None


def test_allocate_proportional_exact_and_capped():
    assert allocate(10, {"a": 1.0, "b": 1.0, "c": 2.0}, {"a": 100, "b": 100, "c": 100}) == {"a": 3, "b": 2, "c": 5}
    out = allocate(10, {"a": 8.0, "b": 1.0, "c": 1.0}, {"a": 4, "b": 100, "c": 100})
    assert out == {"a": 4, "b": 3, "c": 3}
    # all shares 0: split by free capacity (0.5 / 4.5 → tie on the remainder goes to the first)
    assert allocate(5, {"a": 0.0, "b": 0.0}, {"a": 1, "b": 9}) == {"a": 1, "b": 4}
    with pytest.raises(ValueError):
        allocate(11, {"a": 1.0}, {"a": 10})


def test_cosine_death_rate_decays_to_floor():
    assert cosine_death_rate(0, 100, 0.7) == pytest.approx(0.7)
    assert cosine_death_rate(100, 100, 0.7) == pytest.approx(0.005)
    assert cosine_death_rate(500, 100, 0.7) == pytest.approx(0.005)
    assert cosine_death_rate(50, 100, 0.7) == pytest.approx(0.005 + 0.695 / 2)
    rates = [cosine_death_rate(t, 100, 0.7) for t in range(0, 101, 10)]
    assert rates == sorted(rates, reverse=True)


def test_n_to_remove_is_ceil():
    assert n_to_remove(0.3, 10) == 3 and n_to_remove(0.31, 10) == 4 and n_to_remove(0.99, 1) == 1


def test_er_densities_follow_formula_with_cap():
    shapes = {"big": (1000, 100), "small": (4, 4), "mid": (200, 50)}
    d = er_densities(shapes, 0.3)
    assert d["small"] == 1.0  # (4+4)/16 = 0.5 raw; capped
    eps = d["big"] / (1100 / 100000)
    assert d["mid"] == pytest.approx(eps * 250 / 10000)
    total = sum(d[k] * math.prod(s) for k, s in shapes.items())
    assert total == pytest.approx(0.3 * sum(math.prod(s) for s in shapes.values()))


def test_exact_counts_sum_to_target():
    numels = {"a": 10, "b": 7, "c": 3}
    c = exact_counts(numels, {"a": 0.33, "b": 0.33, "c": 0.33}, 7)
    assert sum(c.values()) == 7 and all(0 <= c[k] <= numels[k] for k in c)
