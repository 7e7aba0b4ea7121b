"""The declarative search space: grid, samplers, hyperopt/ConfigSpace views and validation."""
import random

import pytest

from lsh_tune.errors import LSHUsageError
from lsh_tune.space import DEFAULT_SPACE, SearchSpace


def test_grid_has_the_papers_24_variants_at_one_death_rate():
    grid = DEFAULT_SPACE.grid(0.8)
    assert len(grid) == 24
    assert len({tuple(sorted(c.items())) for c in grid}) == 24
    assert {c["death_rate"] for c in grid} == {0.8}
    assert {c["growth"] for c in grid} == {"random"}


def test_death_rate_lattice_follows_the_authors_step():
    assert DEFAULT_SPACE.death_rate_values() == (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert SearchSpace(death_rate_step=None).death_rate_values() is None
    assert DEFAULT_SPACE.snap_death_rate(0.74) == 0.7
    assert DEFAULT_SPACE.snap_death_rate(1.5) == 0.9


@pytest.mark.parametrize("key,value", [("sparse_init", "normal"), ("death", "random"),
                                       ("redistribution", "momentum"), ("growth", "gradient")])
def test_validate_names_value_and_choices(key, value):
    cfg = dict(DEFAULT_SPACE.grid()[0], **{key: value})
    with pytest.raises(LSHUsageError, match=rf"{key}='{value}'.*choose one of"):
        DEFAULT_SPACE.validate(cfg)


@pytest.mark.parametrize("rate", [0.3, 0.95, "x", float("nan")])
def test_validate_rejects_death_rate_out_of_range(rate):
    with pytest.raises(LSHUsageError, match="death_rate"):
        DEFAULT_SPACE.validate(dict(DEFAULT_SPACE.grid()[0], death_rate=rate))


def test_validate_rejects_off_lattice_and_missing_and_extra():
    base = DEFAULT_SPACE.grid()[0]
    with pytest.raises(LSHUsageError, match="lattice"):
        DEFAULT_SPACE.validate(dict(base, death_rate=0.45))
    assert SearchSpace(death_rate_step=None).validate(dict(base, death_rate=0.45))["death_rate"] == 0.45
    with pytest.raises(LSHUsageError, match="lacks death"):
        DEFAULT_SPACE.validate({k: v for k, v in base.items() if k != "death"})
    with pytest.raises(LSHUsageError, match="unknown keys"):
        DEFAULT_SPACE.validate(dict(base, lr=1.0), allow_extra=False)


@pytest.mark.parametrize("kwargs", [dict(death_rate_range=(0.9, 0.4)), dict(death_rate_step=0.0),
                                    dict(death_rate_range=(0.4, 1.0)), dict(choices=())])
def test_bad_space_definitions_are_rejected(kwargs):
    with pytest.raises(LSHUsageError):
        SearchSpace(**kwargs)


def test_extending_in_one_place_reaches_every_view():
    space = DEFAULT_SPACE.with_choices(growth=("random", "momentum", "gradient"))
    assert len(space.grid()) == 72
    assert "growth" in space.to_hyperopt()
    assert len(space.to_configspace().get_hyperparameter("growth").choices) == 3
    assert space.validate(dict(space.grid()[0], growth="gradient"))["growth"] == "gradient"
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_samples_are_seeded_and_valid():
    a = [DEFAULT_SPACE.sample(random.Random(5)) for _ in range(3)]
    b = [DEFAULT_SPACE.sample(random.Random(5)) for _ in range(3)]
    assert a == b
    for cfg in a:
        assert DEFAULT_SPACE.validate(cfg) == cfg


def test_hyperopt_and_configspace_round_trip():
    from hyperopt.pyll.stochastic import sample

    point = sample(DEFAULT_SPACE.to_hyperopt(), rng=__import__("numpy").random.default_rng(0))
    DEFAULT_SPACE.validate(point)
    cfg = DEFAULT_SPACE.grid(0.6)[7]
    assert DEFAULT_SPACE.from_hyperopt_point(DEFAULT_SPACE.to_hyperopt_point(cfg)) == cfg
    cs = DEFAULT_SPACE.to_configspace(seed=1)
    for conf in cs.sample_configuration(5):
        DEFAULT_SPACE.from_configspace(conf)
