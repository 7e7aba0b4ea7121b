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
    assert "--mode {a,b}" in help_text and "the mode (default: a)" in help_text and "--flag [{true,false}]" in help_text
    assert p.parse_args(["--size", "1", "--flag"]).flag is True          # a bare bool flag means true
    assert p.parse_args(["--size", "1", "--flag", "false"]).flag is False
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


def _parser_of(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _generated(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options ``add_dataclass_args`` made (they note themselves as given), by field name."""
    from lsh_tune.cli._dataclass_args import _Store

    return {a.dest: a for a in parser._actions if isinstance(a, _Store)}


def _cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


@pytest.mark.parametrize("path,cls", [(("search",), "lsh_tune.search.config:SearchConfig"),
                                      (("replay",), "lsh_tune.table:ReplaySettings"),
                                      (("table", "build"), "lsh_tune.table:TableSettings")],
                         ids=["search", "replay", "table-build"])
def test_every_setting_has_its_generated_option_and_every_generated_option_a_setting(path, cls):
    """A field added to the dataclass is on the command line, an option is not kept for a removed one."""
    import importlib

    module, name = cls.split(":")
    cls = getattr(importlib.import_module(module), name)
    generated = _generated(_parser_of(*path))
    assert set(generated) == {f.name for f in _cli_fields(cls)}
    for f in _cli_fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
        assert generated[f.name].help, f.name


def test_replay_options_follow_replay_settings_with_the_same_defaults():
    from lsh_tune.cli.replay import METRICS, OVERRIDES
    from lsh_tune.table import ReplaySettings

    options = _generated(_parser_of("replay"))
    for f in dataclasses.fields(ReplaySettings):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert options[f.name].option_strings == [flag] and options[f.name].default == f.default, f.name
    assert options["metric"].metavar == "{" + ",".join(METRICS) + "}" and set(OVERRIDES) <= set(options)
    assert options["ls_top"].metavar == "K"
    hand = {a.dest for a in _parser_of("replay")._actions} - set(options)
    assert hand == {"help", "table", "seeds", "reduction_factor", "targets", "table_seeds", "json"}


def test_every_replay_setting_is_reachable_from_the_command_line():
    from lsh_tune.cli.replay import replay_settings
    from lsh_tune.table import ReplaySettings

    given = ReplaySettings(hpo="tpe", metric="loss", pool=9, rounds_every=2, final_k=3, max_rounds=2, seed=4, gpus=2,
                           ls_state="hc", ls_embedding="raw", ls_distance="cosine", ls_fit="candidate",
                           ls_history="boundary", ls_top=5, grid_death_rate=0.5)
    preset = dataclasses.replace(given, ls_state="h", ls_embedding="pca", ls_distance="l2", ls_fit="authors",
                                 ls_preset="authors")
    for settings in (given, preset):
        argv = ["replay", "T"]
        for f in dataclasses.fields(ReplaySettings):
            if getattr(settings, f.name) is not None:       # None: the option left out
                argv += ["--" + f.name.replace("_", "-"), str(getattr(settings, f.name))]
        assert replay_settings(build_parser().parse_args(argv)) == settings
    assert {f.name for f in dataclasses.fields(ReplaySettings)} <= {k for k, v in vars(given).items()
                                                                     if v is not None} | {"ls_preset"}
    assert replay_settings(build_parser().parse_args(["replay", "T"])) == ReplaySettings()


def test_table_build_options_override_the_preset_and_keep_documented_spellings():
    from lsh_tune.cli import table as table_cli
    from lsh_tune.table import table_preset

    generated = _generated(_parser_of("table", "build"))
    assert all(a.default is None for a in generated.values())  # None: the preset's value
    args = build_parser().parse_args(["table", "build", "T", "--preset", "tiny", "--seeds", "0", "--epochs", "2",
                                      "--embeddings", "pca", "--train-tokens", "5000", "--first", "2",
                                      "--sample", "1", "--sample-seed", "3", "--num-cpus", "1"])
    settings, configs = table_cli._plan(args)
    assert settings == table_preset("tiny", seeds=(0,), epochs=2, embeddings=("pca",), train_tokens=5000,
                                    train_spec={**table_preset("tiny").train_spec, "epochs": 2})
    assert len(configs) == 2 and args.num_cpus == 1
    with pytest.raises(LSHUsageError, match="--epochs/--seeds set a new table's settings: pass --preset too"):
        table_cli._plan(build_parser().parse_args(["table", "build", "T", "--seeds", "0", "--epochs", "2"]))
    with pytest.raises(LSHUsageError, match="metrics='l1' is not allowed"):
        table_cli._plan(build_parser().parse_args(["table", "build", "T", "--preset", "tiny", "--metrics", "l2,l1"]))


def test_version_is_the_packages_and_printed_by_lsh_tune_version(capsys, monkeypatch):
    import tomllib
    from importlib import metadata
    from pathlib import Path

    import lsh_tune
    from lsh_tune.cli import main

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    expected = pyproject["project"]["version"]
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"lsh-tune {expected}\n"

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)  # a checkout run without install
    assert lsh_tune.package_version() == expected


def test_top_level_help_is_one_paragraph_naming_the_main_commands():
    from lsh_tune.cli import DESCRIPTION

    text = build_parser().format_help()
    paragraphs = text.split("\n\n")
    description = " ".join(paragraphs[1].split())
    assert description == " ".join(DESCRIPTION.split()) and "\n\n" not in DESCRIPTION.strip()
    for command in ("search", "report", "train-dense", "train-sparse", "ls", "table build", "replay"):
        assert f"`{command}`" in description, command
    assert "register(" not in text and "--version" in text
