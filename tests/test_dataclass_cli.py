"""Options generated from config dataclasses (``lsh_tune.cli._dataclass_args``) and the commands built on them."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from lsh_tune.cli import OneLineParser, build_parser
from lsh_tune.cli._dataclass_args import add_dataclass_args, dataclass_from_args, dataclass_values
from lsh_tune.errors import LSHUsageError, check_choice


@dataclass(frozen=True)
class Demo:
    size: int
    top: int | None = None
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    mode: str = field(default="a", metadata={"choices": ("a", "b"), "help": "the mode"})
    flag: bool = False
    groups: tuple[str, ...] = ("x", "y")
    pair: tuple[float, float] = (0.0, 1.0)
    hidden: object = field(default=None, metadata={"cli": False})

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("a", "b"))


def _parser(**kw) -> tuple[argparse.ArgumentParser, tuple[str, ...]]:
    p = OneLineParser(prog="lsh-tune")
    return p, add_dataclass_args(p, Demo, **kw)


def test_types_defaults_and_required_come_from_the_dataclass():
    p, names = _parser()
    assert names == ("size", "top", "rate", "mode", "flag", "groups", "pair")  # "cli": False is left out
    args = p.parse_args(["--size", "3"])
    assert dataclass_from_args(Demo, args) == Demo(size=3)
    args = p.parse_args(["--size", "3", "--top", "7", "--rate", "0.25", "--mode", "b", "--flag", "true",
                         "--groups", "y, z,", "--pair", "2,3.5"])
    assert dataclass_from_args(Demo, args) == Demo(3, 7, 0.25, "b", True, ("y", "z"), (2.0, 3.5))
    assert dataclass_from_args(Demo, args, size=9).size == 9   # extra keywords win


@pytest.mark.parametrize("argv", [[], ["--size", "x"], ["--size", "1", "--flag", "maybe"],
                                  ["--size", "1", "--pair", "1,2,3"], ["--size", "1", "--pair", "1,b"]])
def test_unparsable_values_are_one_line_argparse_errors(argv, capsys):
    p, _ = _parser()
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("lsh-tune: error: ") and len(err.strip().splitlines()) == 1


def test_choices_are_shown_and_checked_by_the_dataclass():
    p, _ = _parser()
    help_text = p.format_help()
    assert "--mode {a,b}" in help_text and "the mode (default: a)" in help_text and "--flag {true,false}" in help_text
    with pytest.raises(LSHUsageError, match="mode='c' is not allowed; choose one of: a, b"):
        dataclass_from_args(Demo, p.parse_args(["--size", "1", "--mode", "c"]))


def test_overrides_rename_and_redefault_and_optional_mode_keeps_base_values():
    p, _ = _parser(only=("size", "rate"), overrides={"size": {"flag": "-n", "default": 4}})
    assert dataclass_values(Demo, p.parse_args([])) == {"size": 4, "rate": 0.5}
    q, _ = _parser(only=("size", "rate"), optional=True)
    assert dataclass_values(Demo, q.parse_args(["--rate", "0.1"]), drop_none=True) == {"rate": 0.1}
    with pytest.raises(ValueError, match="nope"):
        _parser(exclude=("nope",))
    with pytest.raises(ValueError, match="top"):
        _parser(only=("size",), overrides={"top": {"help": "x"}})


def test_a_field_without_a_command_line_form_must_be_left_out():
    @dataclass
    class Odd:
        table: dict = field(default_factory=dict)

    with pytest.raises(TypeError, match="table"):
        add_dataclass_args(argparse.ArgumentParser(), Odd)


def _options_of(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def test_search_has_one_option_with_help_per_config_field_and_registry_choices():
    from lsh_tune.models import MODELS
    from lsh_tune.search import HPO_METHODS
    from lsh_tune.search.config import SearchConfig

    options = _options_of("search")
    for f in dataclasses.fields(SearchConfig):
        if f.metadata.get("cli", True):
            action = options[f.name]
            assert action.option_strings == ["--" + f.name.replace("_", "-")] and action.help, f.name
            assert action.default == f.default, f.name
    assert options["hpo"].metavar == "{" + ",".join(HPO_METHODS) + "}"
    assert options["model"].metavar == "{" + ",".join(MODELS) + "}"
    assert {"resume", "json", "num_cpus", "num_gpus", "ray_temp_dir"} <= set(options)


def test_train_sparse_and_ls_options_follow_their_dataclasses():
    from lsh_tune.lyapunov import LSConfig
    from lsh_tune.sparse import SparseConfig

    sparse = _options_of("train-sparse")
    assert {f.name for f in dataclasses.fields(SparseConfig)} <= set(sparse)
    assert sparse["prune_interval_epochs"].option_strings == ["--prune-interval"]
    assert sparse["sparse_init"].default == "ER" and sparse["sparsity"].required
    ls = _options_of("ls")
    assert {f.name for f in dataclasses.fields(LSConfig)} <= set(ls)
    assert ls["k"].option_strings == ["-k"] and ls["steps"].default is None
