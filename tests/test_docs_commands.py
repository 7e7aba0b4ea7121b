"""Every shell command in ``README.md``, ``experiments/README.md`` and ``cluster/README.md`` (their
```` ```bash ```` blocks) is checked here, so the docs cannot drift from the code:

* run, at the size the docs give (they are tiny): ``lsh-tune data-info``, ``model-info``, ``ls`` of a
  ``tiny`` model, an experiment script's ``--help`` (which must show the script's own defaults);
* parsed by the real parser and validated by the real config (what refuses a bad search before Ray
  starts), not run: ``lsh-tune search``/``train-dense``/``train-sparse`` (their runs are other tests:
  ``test_search_*``, ``test_train``, ``test_experiments``, ``test_fake_cluster``), ``table``,
  ``replay``, the experiment scripts, ``benchmarks/*.py`` (their ``--help`` lists every option used);
* ``make TARGET``: ``make -n`` (what it would run) must succeed; a ``pip install torch==…`` line must
  pin requirements.txt's torch;
* cluster-only — ``ray …`` (it needs the cluster ``cluster/gpu.yaml`` brings up) and ``aws …`` (an
  AWS account): checked for their options with Ray's own command-line parser, the files they name,
  and a ``ray job submit``'s entrypoint as the experiment command it is.

A command with ``...`` continues the previous command of the same program (``lsh-tune search ...
--resume``); ``[--opt v]`` is an optional part, checked as given. A program not listed here fails the
test: a new kind of command in the docs needs a check.

Also here: the CPU-time estimate the README and BENCHMARKS quote is what the estimator prints.
"""
from __future__ import annotations

import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "experiments/README.md", "cluster/README.md")


def _commands(doc: str) -> list[list[str]]:
    """The commands of the ``bash`` blocks of ``doc``: continuation lines joined, comments dropped,
    ``[--opt v]`` unbracketed, split as the shell would."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / doc).read_text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append([w.strip("[]") if w.startswith("[") or w.endswith("]") else w for w in words])
    return out


ALL = [(doc, cmd) for doc in DOCS for cmd in _commands(doc)]


def _expand(commands: list[list[str]]) -> list[list[str]]:
    """``prog sub ... more`` → the previous ``prog sub`` command's words followed by ``more``."""
    out, last = [], {}
    for cmd in commands:
        if "..." in cmd:
            i = cmd.index("...")
            base = last[tuple(cmd[:i])]
            cmd = base + cmd[i + 1:]
        last[tuple(cmd[:2])] = cmd
        out.append(cmd)
    return out


def test_the_docs_have_commands_of_every_kind():
    programs = {cmd[0] for _, cmd in ALL}
    assert {"make", "lsh-tune", "python", "ray", "aws", "pip"} <= programs, programs
    assert len(ALL) >= 40


# --------------------------------------------------------------------------- lsh-tune
RUN = {"data-info", "model-info", "ls"}  # run as written (tiny); the rest: parsed and validated


def _lsh_tune(argv: list[str], capsys):
    from lsh_tune.cli import build_parser, main

    args = build_parser().parse_args(argv)  # SystemExit(2) on an unknown option or bad value
    if args.command == "search":
        from lsh_tune.cli.search import config_from_args

        config_from_args(args)  # the config refuses what the search would (e.g. max_epochs too small)
    elif args.command in ("train-dense", "train-sparse"):
        from lsh_tune.cli.common import training_specs

        training_specs(args)
    elif args.command == "replay":
        from lsh_tune.cli.replay import replay_settings

        replay_settings(args)  # the settings refuse what the replay would
    elif args.command in RUN and not any(a.startswith("--checkpoint") for a in argv):
        assert main(argv) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("doc", DOCS)
def test_lsh_tune_commands_parse_validate_and_the_tiny_ones_run(doc, capsys, one_torch_thread, monkeypatch):
    monkeypatch.chdir(REPO)
    commands = _expand([cmd for d, cmd in ALL if d == doc and cmd[0] == "lsh-tune"])
    for cmd in commands:
        _lsh_tune(cmd[1:], capsys)


# --------------------------------------------------------------------------- python scripts
def _script(path: str) -> dict:
    return runpy.run_path(str(REPO / path), run_name="docs")


def _check_experiment(argv: list[str], capsys) -> None:
    """An experiment script's command: parsed by its own parser, validated by the search config; its
    ``--help`` is run and must show the script's settings as the defaults."""
    from lsh_tune.cli.experiment import _preset, build_parser, main
    from lsh_tune.cli.search import config_from_args

    path, args = argv[0], argv[1:]
    script = _script(path)["SCRIPT"]
    if "--help" in args:
        with pytest.raises(SystemExit) as e:
            main(script, args, prog=Path(path).name)
        help_text = capsys.readouterr().out
        assert e.value.code == 0 and f"usage: {Path(path).name}" in help_text
        values = dict(zip(script[::2], script[1::2]))
        assert f"(default: {values['--sparsity']})" in help_text and f"(default: {values['--name']})" in help_text
        assert "size preset (default: paper)" in help_text and "--resume" in help_text
        return
    config_from_args(build_parser(script, _preset(args)).parse_args(args))


def _check_python(argv: list[str], capsys) -> None:
    if argv[0].startswith("experiments/"):
        _check_experiment(argv, capsys)
        return
    assert argv[0].startswith("benchmarks/") and (REPO / argv[0]).is_file(), argv
    help_text = subprocess.run([sys.executable, argv[0], "--help"], cwd=REPO, capture_output=True, text=True,
                               timeout=120, check=True).stdout
    for option in (a for a in argv[1:] if a.startswith("--")):
        assert option in help_text, (argv, option)


def test_python_commands_parse_and_validate(capsys, one_torch_thread):
    commands = [cmd[1:] for _, cmd in ALL if cmd[0] == "python"]
    assert any("--help" in c for c in commands) and any("--resume" in c for c in commands)
    for argv in commands:
        _check_python(argv, capsys)


def test_experiment_scripts_copied_alone_show_their_own_help(tmp_path):
    """``cp experiments/ptb_rhn.py /tmp/x/ && cd /tmp/x && python ptb_rhn.py --help``: the scripts import
    only the installed package, and the help shows the script's defaults, not ``lsh-tune search``'s."""
    for name in ("ptb_rhn.py", "wt2_awd_lstm_mos.py"):
        (tmp_path / name).write_bytes((REPO / "experiments" / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    r = subprocess.run([sys.executable, "ptb_rhn.py", "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage: ptb_rhn.py" in r.stdout and "Paper result: RHN" in r.stdout
    for default in ("architecture (default: rhn)", "size preset (default: paper)", "(default: 0.53)",
                    "(default: ptb_rhn)", "initial pool size (default: 24)", "--resume"):
        assert default in " ".join(r.stdout.split()), default
    r = subprocess.run([sys.executable, "wt2_awd_lstm_mos.py", "--preset", "tiny", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    flat = " ".join(r.stdout.split())
    assert r.returncode == 0 and "(default: wikitext-2)" in flat and "(default: tiny)" in flat
    assert "initial pool size (default: 3)" in flat and "(default: 2000)" in flat
    assert not list(tmp_path.glob("_common*"))


# --------------------------------------------------------------------------- make, pip
def test_make_and_pip_commands():
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for _, cmd in ALL:
        if cmd[0] == "make":
            r = subprocess.run(["make", "-n", "-B", *cmd[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (cmd, r.stderr)
            index = next((a.split("=", 1)[1] for a in cmd if a.startswith("TORCH_INDEX=")), None)
            if index:
                assert f"torch=={pins['torch']} --index-url {index}" in r.stdout, r.stdout
        elif cmd[0] == "pip":
            assert cmd[:2] == ["pip", "install"] and f"torch=={pins['torch']}" in cmd, cmd
            assert cmd[cmd.index("--index-url") + 1].startswith("https://download.pytorch.org/whl/"), cmd


# --------------------------------------------------------------------------- cluster-only
def test_cluster_only_commands_have_valid_options(capsys):
    """``ray``: Ray's own click parser takes the options (no cluster needed to parse), the YAML named
    exists, and a job's entrypoint is a valid experiment command. ``aws``: the policy files exist."""
    import json

    import click
    from ray.scripts.scripts import cli

    for doc, cmd in ALL:
        if cmd[0] == "ray":
            words = cmd[1:]
            command, name = cli, ["ray"]
            while isinstance(command, click.Group):
                command, name = command.commands[words[0]], name + [words[0]]
                words = words[1:]
            ctx = command.make_context(" ".join(name), list(words))  # click.UsageError on a bad option
            if "cluster_config_file" in ctx.params:
                assert (REPO / ctx.params["cluster_config_file"]).is_file(), cmd
            if name[1:] == ["job", "submit"]:
                assert ctx.params["working_dir"] == "." and ctx.params["entrypoint"][0] == "python", cmd
                _check_python(list(ctx.params["entrypoint"][1:]), capsys)
        elif cmd[0] == "aws":
            assert cmd[1] == "iam", cmd
            for word in cmd:
                if word.startswith("file://"):
                    json.loads((REPO / word.removeprefix("file://")).read_text())


# --------------------------------------------------------------------------- one source for the CPU estimate
def test_the_quoted_cpu_estimate_is_what_the_estimator_prints(monkeypatch):
    """README and BENCHMARKS quote the refusal of ``experiments/ptb_stacked_lstm.py`` (``paper``, no
    GPU) on 2 cores; the numbers must be the ones :func:`check_compute` prints for it."""
    from lsh_tune.cli.experiment import script_defaults
    from lsh_tune.errors import LSHUsageError
    from lsh_tune.search.config import SearchConfig
    from lsh_tune.search.run.preflight import check_compute

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    script = _script("experiments/ptb_stacked_lstm.py")["SCRIPT"]
    cfg = SearchConfig(**{**script_defaults(script, "paper"), "gpus_per_trial": 0.0})
    with pytest.raises(LSHUsageError) as e:
        check_compute(cfg)
    total, reference = re.search(r"about (\S+ \S+) \(the dense reference alone (\S+ \S+),", str(e.value)).groups()
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"prints about {total} (the dense reference alone {reference})" in readme, (total, reference)
    benchmarks = " ".join((REPO / "BENCHMARKS.md").read_text().split())
    assert f'"about {total}" (the dense reference alone {reference};' in benchmarks, (total, reference)
