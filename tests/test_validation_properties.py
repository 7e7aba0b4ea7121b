"""Property-based tests of the validators and the config dataclasses (``hypothesis``; no Ray, no I/O).

Every config either builds and then satisfies its documented invariants, or raises
:class:`~lsh_tune.errors.LSHUsageError` naming the field — never another exception type, never an
out-of-range value that slips through.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsh_tune.errors import LSHUsageError, check_int, check_name, check_range
from lsh_tune.lyapunov import LSConfig
from lsh_tune.models import ModelSpec, TrainSpec
from lsh_tune.search.config import SearchConfig
from lsh_tune.sparse import SparseConfig

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6))
anything = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=6), st.lists(st.integers(), max_size=2))


@FAST
@given(value=numbers, low=st.one_of(st.none(), st.floats(-10, 10)), high=st.one_of(st.none(), st.floats(-10, 10)),
       low_open=st.booleans(), high_open=st.booleans())
def test_check_range_accepts_exactly_the_finite_values_inside(value, low, high, low_open, high_open):
    inside = math.isfinite(value)
    if low is not None:
        inside &= value > low if low_open else value >= low
    if high is not None:
        inside &= value < high if high_open else value <= high
    try:
        check_range("x", value, low, high, low_open=low_open, high_open=high_open)
        accepted = True
    except LSHUsageError as e:
        accepted = False
        assert str(e).startswith("x=")
    assert accepted == inside


@FAST
@given(value=anything, low=st.integers(-3, 3))
def test_check_int_accepts_exactly_integers_from_low(value, low):
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    try:
        check_int("n", value, low)
        assert ok
    except LSHUsageError as e:
        assert not ok and str(e).startswith("n=")


@FAST
@given(name=st.text(max_size=12))
def test_an_accepted_name_never_leaves_the_storage_path(name):
    root = Path("/storage/root")
    try:
        check_name("name", name)
    except LSHUsageError:
        return
    target = Path(root, name).resolve()
    assert target.parent == root and target != root


#: Per field of SearchConfig: (valid values, classic mistakes).
SEARCH_FIELDS = {
    "model": (st.sampled_from(["stacked_lstm", "rhn"]), st.sampled_from(["foo", "", "LSTM"])),
    "hpo": (st.sampled_from(["random", "tpe", "grid", "bohb"]), st.just("smac")),
    "metric": (st.sampled_from(["ls", "loss"]), st.just("acc")),
    "sparsity": (st.floats(0.05, 0.95), numbers),
    "pool": (st.integers(4, 24), st.one_of(st.integers(-2, 1), st.just(True))),
    "rounds_every": (st.integers(1, 3), st.integers(-1, 0)),
    "final_k": (st.integers(1, 3), st.integers(4, 30)),  # a bad one is >= any valid pool here
    "max_epochs": (st.one_of(st.none(), st.integers(30, 60)), st.integers(-1, 5)),
    "lr": (st.one_of(st.none(), st.floats(1e-3, 100.0)), numbers),
    "gpus_per_trial": (st.sampled_from([0.5, 1.0]), numbers),
    "max_tokens": (st.one_of(st.none(), st.integers(1000, 10**6)), st.integers(-5, 0)),
    "name": (st.sampled_from(["lsh", "run-1"]), st.sampled_from(["", ".", "..", "a/b", "x\0", "reference_cache"])),
    "ls_k": (st.integers(1, 4), st.integers(-1, 0)),
    "verbose": (st.integers(0, 3), st.integers(4, 9)),
}


@st.composite
def search_settings(draw):
    """Search settings with at most one field drawn from its classic mistakes (or from any number)."""
    bad = draw(st.sampled_from([None, *SEARCH_FIELDS]))
    kw = {k: draw(mistakes if k == bad else good) for k, (good, mistakes) in SEARCH_FIELDS.items()}
    if kw["hpo"] == "grid" and isinstance(kw["pool"], int) and kw["pool"] > 24:
        kw["pool"] = 24
    return kw


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kw=search_settings())
def test_a_search_config_is_valid_or_one_usage_error(kw):
    try:
        cfg = SearchConfig(**kw)
    except LSHUsageError as e:
        assert "=" in str(e) or "gpus_per_trial" in str(e)  # names the field and its value
        return
    assert 0 < cfg.sparsity < 1 and 2 <= cfg.pool_size and 1 <= cfg.final_k < cfg.pool_size
    assert cfg.lr is None or (math.isfinite(cfg.lr) and cfg.lr > 0)
    assert cfg.max_tokens is None or cfg.max_tokens >= 1
    assert cfg.resolved_max_epochs() >= 1 and 0 <= cfg.verbose <= 3 and cfg.ls_k >= 1
    assert Path("/s", cfg.name).resolve().parent == Path("/s")
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg


@FAST
@given(sparsity=numbers, death_rate=numbers, prune=anything, beta=numbers, init=st.sampled_from(["ER", "uniform", "x"]))
def test_a_sparse_config_is_valid_or_one_usage_error(sparsity, death_rate, prune, beta, init):
    try:
        cfg = SparseConfig(sparsity, init, death_rate=death_rate, prune_interval_epochs=prune, momentum_beta=beta)
    except LSHUsageError:
        return
    assert 0 < cfg.sparsity < 1 and 0 < cfg.death_rate < 1 and cfg.prune_interval_epochs >= 1
    assert 0 <= cfg.momentum_beta < 1 and SparseConfig.from_dict(cfg.to_dict()) == cfg


@FAST
@given(k=anything, steps=anything, warmup=anything, top=anything)
def test_an_ls_config_is_valid_or_one_usage_error(k, steps, warmup, top):
    try:
        cfg = LSConfig(k=k, steps=steps, warmup=warmup, top=top)
    except LSHUsageError:
        return
    assert cfg.k >= 1 and cfg.steps >= 1 and cfg.warmup >= 0 and (cfg.top is None or cfg.top >= 1)


@FAST
@given(lr=numbers, batch=anything, bptt=anything, clip=numbers, epochs=anything, emb=anything,
       hidden=st.one_of(st.lists(st.integers(-2, 64), max_size=3), st.text(max_size=3)), drop=numbers)
def test_model_and_train_specs_are_valid_or_one_usage_error(lr, batch, bptt, clip, epochs, emb, hidden, drop):
    try:
        train = TrainSpec(lr=lr, batch_size=batch, bptt=bptt, clip=clip, epochs=epochs)
        assert train.lr > 0 and math.isfinite(train.lr) and train.batch_size >= 1 and train.bptt >= 2
        assert train.clip >= 0 and train.epochs >= 0 and TrainSpec.from_dict(train.to_dict()) == train
    except LSHUsageError:
        pass
    try:
        spec = ModelSpec("stacked_lstm", emb, hidden, dropouts=(drop, 0.0, 0.0, 0.0))
    except LSHUsageError:
        return
    assert spec.emb >= 1 and spec.hidden and all(h >= 1 for h in spec.hidden) and 0 <= spec.dropouts[0] < 1
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("d", [{}, {"model": "stacked_lstm"}, {"model": "rhn", "emb": 8, "hidden": [8], "x": 1}, []])
def test_spec_from_dict_names_what_is_wrong(d):
    with pytest.raises(LSHUsageError, match="ModelSpec"):
        ModelSpec.from_dict(d)
