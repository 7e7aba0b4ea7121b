"""``lsh-tune search --table TABLE``: a search in a training table's setting (no Ray here).

The option fills ``SearchConfig.setting`` (model and training specs, corpus slices, sparse init)
and the table's model, corpus, sparsity and LS sizes; options that contradict the table are
refused, naming both values. The Ray run that checks the setting is trained exactly (the
search's reference equals the table's) is in ``tests/test_search_ray.py``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from lsh_tune.cli import build_parser
from lsh_tune.cli.search import config_from_args
from lsh_tune.errors import LSHUsageError
from lsh_tune.search.run.reference import search_corpus
from lsh_tune.table import TableSettings, read_manifest

TINY = Path(__file__).resolve().parents[1] / "tables" / "tiny"


def _config(*options: str):
    return config_from_args(build_parser().parse_args(["search", "--table", str(TINY), "--gpus-per-trial", "0",
                                                       *options]))


def test_table_fills_the_setting_and_its_defaults():
    table = TableSettings.from_dict(read_manifest(TINY)["settings"])
    cfg = _config("--hpo", "grid", "--pool", "6", "--rounds-every", "1", "--final-k", "2")
    assert cfg.setting == table.search_setting()
    assert (cfg.model, cfg.corpus, cfg.sparsity) == ("stacked_lstm", "ptb", table.sparsity)
    assert (cfg.ls_k, cfg.ls_steps, cfg.ls_warmup) == (1, 12, 3)  # the tiny table's, not the search defaults
    grid = [{k: v for k, v in c.items() if k != "cid"} for c in cfg.space.grid(0.8)]
    assert sorted(map(sorted, (c.items() for c in grid))) == sorted(
        sorted((k, v) for k, v in c.items() if k != "key") for c in read_manifest(TINY)["configs"])
    model_spec, train_spec = cfg.specs()
    from lsh_tune.models import ModelSpec, TrainSpec

    assert model_spec == ModelSpec.from_dict(table.model_spec) and train_spec == TrainSpec(**table.train_spec)
    assert cfg.resolved_max_epochs() == table.epochs
    corpus = search_corpus(cfg)
    assert [corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()] == [6000, 3000, 3000]
    from lsh_tune.search.candidate import trial_settings

    assert trial_settings(cfg, ("death",)).sparse_kwargs == {"init_scale": True}


def test_saved_and_loaded_with_the_setting(tmp_path):
    from lsh_tune.search.config import SearchConfig

    cfg = _config("--storage-path", str(tmp_path))
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("options, message", [
    (("--preset", "small"), "--preset 'small' cannot be combined with --table"),
    (("--max-tokens", "100"), "--max-tokens 100 cannot be combined with --table"),
    (("--ls-k", "2"), "--ls-k 2 contradicts --table .*ls_k=1"),
    (("--sparsity", "0.5"), "--sparsity 0.5 contradicts --table .*sparsity=0.67"),
    (("--model", "rhn"), "--model 'rhn' contradicts --table"),
])
def test_contradicting_options_are_refused(options, message):
    with pytest.raises(LSHUsageError, match=message):
        _config(*options)


def test_no_table_there_is_one_line(tmp_path):
    with pytest.raises(LSHUsageError, match="manifest.json does not exist: not a table"):
        config_from_args(build_parser().parse_args(["search", "--table", str(tmp_path)]))


def test_a_setting_with_other_keys_or_another_model_is_refused():
    from lsh_tune.search.config import SearchConfig

    table = TableSettings.from_dict(read_manifest(TINY)["settings"])
    with pytest.raises(LSHUsageError, match="must be a dict with exactly the keys"):
        SearchConfig(setting={"model_spec": table.model_spec})
    with pytest.raises(LSHUsageError, match="differs from the setting's model 'stacked_lstm'"):
        SearchConfig(model="rhn", setting=table.search_setting())
    with pytest.raises(LSHUsageError, match="max_tokens=50 cannot be combined"):
        SearchConfig(max_tokens=50, setting=table.search_setting())
