"""Shared pieces of the reliability suite (imported by its modules; fixtures are re-exported there)."""
from __future__ import annotations

import pytest

#: The PTB slice of every Ray-free reliability test (tokens per split).
TOKENS = 2000


@pytest.fixture(scope="session")
def ptb_2k():
    from lsh_tune.data import load_corpus

    return load_corpus("ptb", max_tokens=TOKENS)


@pytest.fixture
def search_cfg(tmp_path):
    """A tiny LS search config stored under ``tmp_path``."""
    from lsh_tune.search.config import SearchConfig

    return SearchConfig(hpo="random", metric="ls", pool=4, rounds_every=1, max_epochs=3, gpus_per_trial=0,
                        max_tokens=TOKENS, storage_path=str(tmp_path / "store"), name="exp", ls_k=1, ls_steps=10)


def candidate(cfg, corpus, cid: str = "c000"):
    """(trainer, hook, settings) of a real candidate of ``cfg`` (Ray-free)."""
    from lsh_tune.search.candidate import build_candidate, trial_settings
    from lsh_tune.space import DEFAULT_SPACE

    settings = trial_settings(cfg, DEFAULT_SPACE.names)
    config = {"cid": cid, **DEFAULT_SPACE.grid()[0]}
    trainer, hook = build_candidate(settings, config, corpus)
    return trainer, hook, settings, config
