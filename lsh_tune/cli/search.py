"""``lsh-tune search``: run or resume an LS-based hyperpruning search on Ray Tune."""
from __future__ import annotations

import argparse
import os

from lsh_tune.errors import LSHUsageError

__all__ = ["register", "run", "config_from_args"]


def register(sub) -> None:
    p = sub.add_parser("search", help="LS-based hyperpruning search on Ray Tune",
                       description="Run (or --resume) an LSH search; outputs go to STORAGE_PATH/NAME.")
    p.add_argument("--model", default="stacked_lstm", help="stacked_lstm, rhn or awd_lstm_mos")
    p.add_argument("--preset", default="tiny", help="paper, small or tiny")
    p.add_argument("--corpus", default="ptb", help="ptb, wikitext-2 or a directory with train/valid/test")
    p.add_argument("--data-dir", default=None, help="extra directory searched for the corpus")
    p.add_argument("--max-tokens", type=int, default=None, help="keep the first N tokens of each split")
    p.add_argument("--sparsity", type=float, default=0.67, help="target sparsity s (default 0.67)")
    p.add_argument("--hpo", default="tpe", help="grid, random, tpe, atpe, bohb or hyperband (default tpe)")
    p.add_argument("--metric", default="ls", help="ls (LS distance, LSH) or loss (loss-based baseline)")
    p.add_argument("--pool", type=int, default=None, help="initial pool size (default 20; grid: 24)")
    p.add_argument("--rounds-every", type=int, default=3, help="E: epochs per round (default 3)")
    p.add_argument("--final-k", type=int, default=2, help="stop halving at this pool size (default 2)")
    p.add_argument("--max-epochs", type=int, default=None, help="total epochs of a finalist")
    p.add_argument("--max-rounds", type=int, default=None, help="cap on halving rounds")
    p.add_argument("--epoch-budget", type=int, default=None, help="cap on candidate-epochs in selection")
    p.add_argument("--gpus-per-trial", type=float, default=1.0, help="GPUs per trial, fractional ok (default 1)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    p.add_argument("--storage-path", default="~/lsh_results", help="experiment root (shared on a cluster)")
    p.add_argument("--name", default="lsh", help="experiment name (directory under --storage-path)")
    p.add_argument("--resume", action="store_true", help="continue the search in STORAGE_PATH/NAME")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--address", default=None, help="Ray address: auto (running cluster), local, or host:port")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a Ray instance started here")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs of a Ray instance started here")
    p.add_argument("--ray-temp-dir", default=None, help="temp dir of a Ray instance started here")
    p.add_argument("--reference-epochs", type=int, default=None, help="dense reference epochs")
    p.add_argument("--reference-checkpoint", default=None, help="dense checkpoint instead of training one")
    p.add_argument("--ls-k", type=int, default=2, help="validation sequences for the LS (default 2)")
    p.add_argument("--ls-top", type=int, default=None, help="compute only the top exponents")
    p.add_argument("--ls-qr", default="layered",
                   help="layered (one QR per layer, the default) or joint (the authors' one QR over all layers)")
    p.add_argument("--ls-embedding", default="pca", help="pca, raw or tsne")
    p.add_argument("--ls-distance", default="l2", help="l2 or cosine")
    p.add_argument("--ls-fit", default="pool",
                   help="pool (rank in one LS space fitted on the whole pool, the paper) or candidate")
    p.add_argument("--grid-death-rate", type=float, default=0.8, help="death rate of the grid (default 0.8)")
    p.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    p.add_argument("--verbose", type=int, default=1, help="Tune verbosity 0-3")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from lsh_tune.search.config import SearchConfig

    return SearchConfig(
        model=args.model, preset=args.preset, corpus=args.corpus, sparsity=args.sparsity, hpo=args.hpo,
        metric=args.metric, pool=args.pool, rounds_every=args.rounds_every, final_k=args.final_k,
        max_epochs=args.max_epochs, max_rounds=args.max_rounds, epoch_budget=args.epoch_budget,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial, storage_path=args.storage_path,
        name=args.name, seed=args.seed, max_tokens=args.max_tokens, data_dir=args.data_dir,
        reference_epochs=args.reference_epochs, reference_checkpoint=args.reference_checkpoint, ls_k=args.ls_k,
        ls_top=args.ls_top, ls_qr=args.ls_qr, ls_embedding=args.ls_embedding, ls_distance=args.ls_distance,
        ls_fit=args.ls_fit,
        grid_death_rate=args.grid_death_rate, lr=args.lr, address=args.address, verbose=args.verbose)


def _init_ray(args: argparse.Namespace) -> None:
    import ray

    local = args.address in (None, "local")
    if not local and (args.num_cpus is not None or args.num_gpus is not None or args.ray_temp_dir):
        raise LSHUsageError(f"--num-cpus/--num-gpus/--ray-temp-dir only apply to a local Ray instance, not "
                            f"--address {args.address}")
    kwargs = {"address": args.address, "include_dashboard": False}
    if local:
        kwargs.update(num_cpus=args.num_cpus, num_gpus=args.num_gpus)
        if args.ray_temp_dir:
            kwargs["_temp_dir"] = os.path.abspath(args.ray_temp_dir)
    ray.init(**kwargs)


def run(args: argparse.Namespace) -> int:
    from lsh_tune.cli import print_json
    from lsh_tune.search.runner import check_experiment_dir, run_search

    cfg = config_from_args(args)
    check_experiment_dir(cfg, args.resume)  # fail before starting Ray
    _init_ray(args)
    summary = run_search(cfg, resume=args.resume)
    if args.json:
        print_json(summary)
    else:
        best = summary.get("best")
        if best is None:
            print(f"search in {summary['experiment_dir']} ended without a finished finalist")
            return 1
        print(f"best {best['cid']}: {best['config']} val_ppl {best.get('val_ppl'):.2f} "
              f"test_ppl {best.get('test_ppl'):.2f} density {best.get('density'):.3f}")
        print(f"outputs: {summary['experiment_dir']} (results.csv, best.json, best_model.pt)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lsh_tune.cli.search ...``: the ``search`` subcommand alone (same errors/exit codes)."""
    import sys

    from lsh_tune.cli import OneLineParser

    parser = OneLineParser(prog="lsh-tune")
    register(parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser))
    args = parser.parse_args(["search", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except LSHUsageError as e:
        sys.stderr.write(f"lsh-tune: error: {e}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
