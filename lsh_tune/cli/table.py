"""``lsh-tune table build`` (create or continue a training table through Ray Tune, resumable) and
``lsh-tune table analyze`` (the predictive power of its early signals)."""
from __future__ import annotations

import argparse
import os

from lsh_tune.errors import LSHUsageError

__all__ = ["register"]


def register(sub) -> None:
    from lsh_tune.cli.common import comma_list
    from lsh_tune.table import TABLE_PRESETS

    p = sub.add_parser("table", help="training tables: every configuration trained once per seed, every epoch logged")
    tsub = p.add_subparsers(dest="table_command", required=True, parser_class=type(p))
    b = tsub.add_parser("build", help="train the missing runs of a table (continues an existing one)",
                        description="Create TABLE (with --preset) or continue it: finished runs are skipped, "
                                    "a run killed mid-way continues from TABLE/partial/.")
    b.add_argument("table", help="table directory (manifest.json, rows/)")
    b.add_argument("--preset", choices=tuple(TABLE_PRESETS), default=None,
                   help="settings of a new table (an existing table keeps its own)")
    b.add_argument("--no-grid", action="store_true", help="leave out the 24-variant grid at --grid-death-rate")
    b.add_argument("--grid-death-rate", type=float, default=0.8, help="death rate of the grid variants")
    b.add_argument("--sample", type=int, default=0,
                   help="add N seeded configurations of the rest of the lattice (also to an existing table)")
    b.add_argument("--sample-seed", type=int, default=0, help="seed of that sample")
    b.add_argument("--first", type=int, default=None, help="keep only the first N configurations (quick tables)")
    b.add_argument("--seeds", type=comma_list(int, "--seeds", "0,1"), default=None, help="training seeds of a new table, e.g. 0,1")
    b.add_argument("--epochs", type=int, default=None, help="epochs of a new table (default: the preset's)")
    b.add_argument("--limit", type=int, default=None, help="train at most N missing runs in this sitting")
    b.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs (torch threads) per run")
    b.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per run")
    b.add_argument("--num-cpus", type=int, default=None, help="CPUs of a Ray instance started here")
    b.add_argument("--ray-storage", default=None, help="where Tune writes its own files (default: a temp dir)")
    b.add_argument("--data-dir", default=None, help="extra directory searched for the corpus")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object")
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

    if args.preset is None:
        if args.seeds is not None or args.epochs is not None:
            raise LSHUsageError("--seeds/--epochs set a new table's settings: pass --preset too")
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
    base = table_preset(args.preset)
    over: dict = {"seeds": args.seeds}
    if args.epochs is not None:
        over.update(epochs=args.epochs, train_spec={**base.train_spec, "epochs": args.epochs})
    settings = table_preset(args.preset, **over)
    configs = plan_configs(settings, grid=not args.no_grid, sample=args.sample, sample_seed=args.sample_seed,
                           grid_death_rate=args.grid_death_rate)
    return settings, _first(args, configs)


def _first(args: argparse.Namespace, configs: list[dict]) -> list[dict]:
    if args.first is not None:
        if args.first < 1:
            raise LSHUsageError(f"--first {args.first}: must be at least 1")
        configs = configs[:args.first]
    return configs


def build(args: argparse.Namespace) -> int:
    from lsh_tune.table.tune_build import build_table, prepare_table

    settings, configs = _plan(args)
    if args.preset is None and not os.path.exists(os.path.join(args.table, "manifest.json")):
        from lsh_tune.table import TABLE_PRESETS

        raise LSHUsageError(f"{args.table} holds no table yet: pass --preset ({', '.join(TABLE_PRESETS)})")
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
