"""``lsh-tune table build`` (create or continue a training table through Ray Tune, resumable) and
``lsh-tune table analyze`` (the predictive power of its early signals)."""
from __future__ import annotations

import argparse
import os

from lsh_tune.errors import LSHUsageError

__all__ = ["SETTINGS_OVERRIDES", "register"]


def _seeds_list(text: str) -> tuple:
    from lsh_tune.cli.common import comma_list

    return comma_list(int, "--seeds", "0,1")(text)


#: How ``table build`` shows the :class:`~lsh_tune.table.TableSettings` fields it overrides.
SETTINGS_OVERRIDES = {
    "seeds": {"type": _seeds_list},
    "epochs": {"help": "epochs of every run (also the training spec's)"},
}


def register(sub) -> None:
    """Add ``table build`` (one option per :class:`~lsh_tune.table.TableSettings` field that has a
    command-line form, overriding the preset's; beside them what to train and how) and ``table analyze``."""
    from lsh_tune.cli._dataclass_args import add_dataclass_args
    from lsh_tune.cli.common import comma_list
    from lsh_tune.table import TABLE_PRESETS, TableSettings

    p = sub.add_parser("table", help="training tables: every configuration trained once per seed, every epoch logged")
    tsub = p.add_subparsers(dest="table_command", required=True, parser_class=type(p))
    b = tsub.add_parser("build", help="train the missing runs of a table (continues an existing one)",
                        description="Create TABLE (with --preset) or continue it: finished runs are skipped, "
                                    "a run killed mid-way continues from TABLE/partial/.")
    b.add_argument("table", help="table directory (manifest.json, rows/)")
    b.add_argument("--preset", choices=tuple(TABLE_PRESETS), default=None,
                   help="settings of a new table (an existing table keeps its own)")
    new = b.add_argument_group("settings of a new table (with --preset; default: the preset's)")
    add_dataclass_args(new, TableSettings, optional=True, overrides=SETTINGS_OVERRIDES)
    plan = b.add_argument_group("which configurations")
    plan.add_argument("--no-grid", action="store_true", help="leave out the 24-variant grid at --grid-death-rate")
    plan.add_argument("--grid-death-rate", type=float, default=0.8, help="death rate of the grid variants (default: 0.8)")
    plan.add_argument("--sample", type=int, default=0, metavar="N",
                      help="add N seeded configurations of the rest of the lattice (also to an existing table)")
    plan.add_argument("--sample-seed", type=int, default=0, help="seed of that sample (default: 0)")
    plan.add_argument("--first", type=int, default=None, metavar="N",
                      help="keep only the first N configurations (quick tables)")
    run = b.add_argument_group("this sitting")
    run.add_argument("--limit", type=int, default=None, metavar="N", help="train at most N missing runs in this sitting")
    run.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs (torch threads) per run (default: 1.0)")
    run.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per run (default: 0.0)")
    run.add_argument("--num-cpus", type=int, default=None, help="CPUs of a Ray instance started here")
    run.add_argument("--ray-storage", default=None, help="where Tune writes its own files: a directory or a URI such as s3://bucket/prefix "
                     "(default: a temp dir)")
    run.add_argument("--data-dir", default=None, help="extra directory searched for the corpus")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    b.set_defaults(func=build)
    a = tsub.add_parser("analyze", help="Spearman of each epoch's LS distances and validation loss with final perplexity")
    a.add_argument("table", help="a complete table directory")
    a.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the 95%% intervals")
    a.add_argument("--table-seeds", type=comma_list(int, "--table-seeds", "0"), default=None,
                   help="use only these training seeds of the table, e.g. 0 (while later seeds build)")
    a.add_argument("--ls-tops", type=comma_list(int, "--ls-tops", "16,64"), default=(),
                   help="also the distances of only the k leading exponents, for each k (as --ls-top k of a search)")
    a.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    a.set_defaults(func=analyze)


def analyze(args: argparse.Namespace) -> int:
    from lsh_tune.table import Table
    from lsh_tune.table.analysis import predictive_power

    rows = predictive_power(Table(args.table, seeds=args.table_seeds), boot=args.boot, tops=tuple(args.ls_tops))
    if args.json:
        from lsh_tune.cli import print_json
        print_json({"rows": rows})
        return 0
    epochs = sorted({r["epoch"] for r in rows})
    print("signal".ljust(26) + "".join(f"epoch {e}".ljust(24) for e in epochs))
    for name in dict.fromkeys(r["signal"] for r in rows):
        cells = [f"{r['rho']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}]".ljust(24) for r in rows if r["signal"] == name]
        print(name.ljust(26) + "".join(cells))
    return 0


def _plan(args: argparse.Namespace):
    from lsh_tune.table import plan_configs, table_preset

    given = _settings_given(args)
    if args.preset is None:
        if given:
            flags = "/".join("--" + name.replace("_", "-") for name in given)
            raise LSHUsageError(f"{flags} set{'s' if len(given) == 1 else ''} a new table's settings: "
                                "pass --preset too")
        if not args.sample:
            return None, None
        # growing an existing table by a sample: plan it with the table's own settings
        from lsh_tune.table._format import MANIFEST, TableSettings, read_manifest

        if not os.path.exists(os.path.join(args.table, MANIFEST)):
            return None, None  # build() names the missing --preset
        saved = TableSettings.from_dict(read_manifest(args.table)["settings"])
        planned = plan_configs(saved, grid=not args.no_grid, sample=args.sample, sample_seed=args.sample_seed,
                               grid_death_rate=args.grid_death_rate)
        return None, _first(args, planned[len(planned) - args.sample:])  # the same sample a new table gets
    if "epochs" in given:
        given["train_spec"] = {**table_preset(args.preset).train_spec, "epochs": given["epochs"]}
    settings = table_preset(args.preset, **given)
    configs = plan_configs(settings, grid=not args.no_grid, sample=args.sample, sample_seed=args.sample_seed,
                           grid_death_rate=args.grid_death_rate)
    return settings, _first(args, configs)


def _settings_given(args: argparse.Namespace) -> dict:
    """The :class:`~lsh_tune.table.TableSettings` options given (a namespace may lack some)."""
    from lsh_tune.cli._dataclass_args import dataclass_values
    from lsh_tune.table import TableSettings

    return dataclass_values(TableSettings, args, drop_none=True)


def _first(args: argparse.Namespace, configs: list[dict]) -> list[dict]:
    if args.first is not None:
        if args.first < 1:
            raise LSHUsageError(f"--first {args.first}: must be at least 1")
        configs = configs[:args.first]
    return configs


def build(args: argparse.Namespace) -> int:
    from lsh_tune.storage import is_uri
    from lsh_tune.table.tune_build import build_table, prepare_table

    if is_uri(args.table, "table"):
        raise LSHUsageError(f"table={args.table!r} is an object-store URI; a table is a directory on a local or "
                            "shared file system (its runs are written by the trials where they run)")
    if args.ray_storage is not None:
        is_uri(args.ray_storage, "ray_storage")  # a malformed URI, before anything is written or started
    settings, configs = _plan(args)
    if args.preset is None and not os.path.exists(os.path.join(args.table, "manifest.json")):
        from lsh_tune.table import TABLE_PRESETS

        raise LSHUsageError(f"{args.table} holds no table yet: pass --preset ({', '.join(TABLE_PRESETS)})")
    if settings is not None:
        from lsh_tune.data import find_corpus_dir

        find_corpus_dir(settings.corpus, args.data_dir)  # a new table's corpus exists, before anything is written
    prepare_table(args.table, settings, configs)  # settings errors before Ray starts
    import ray

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, address="local")
    try:
        summary = build_table(args.table, settings, configs, cpus_per_trial=args.cpus_per_trial,
                              gpus_per_trial=args.gpus_per_trial, data_dir=args.data_dir,
                              ray_storage=args.ray_storage, limit=args.limit)
    finally:
        ray.shutdown()
    if args.json:
        from lsh_tune.cli import print_json
        print_json(summary)
    else:
        print(f"table {args.table}: trained {summary['trained']} run(s), {summary['failed']} failed, "
              f"{summary['missing']} of {summary['runs_total']} still missing; {summary['wall_s']:.0f} s")
    return 0 if summary["failed"] == 0 else 1
