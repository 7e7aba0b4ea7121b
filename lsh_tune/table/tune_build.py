"""``lsh-tune table build``: train every missing run of a table through Ray Tune (a Ray adapter).

Each (configuration or reference, seed) still missing from ``rows/`` is one Tune trial of a
function trainable that calls the Ray-free :func:`lsh_tune.table._train.train_run` — runs train in
parallel as the cluster's resources allow, each with ``cpus_per_trial`` torch threads. The table
is its own state: a new sitting (after a kill, the next day) starts a fresh Tune run of what is
still missing, completed runs are never retrained, and a run killed mid-way continues from its
``partial/`` state. Tune's own files go to ``ray_storage`` (default: a temporary directory), not
into the table. After the trials the distances of every run whose seed's reference exists are
added (:func:`lsh_tune.table._distances.annotate_table`).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lsh_tune.errors import LSHUsageError
from lsh_tune.table._distances import annotate_table
from lsh_tune.table._format import (MANIFEST, REFERENCE_KEY, TableSettings, is_complete, read_manifest, read_run,
                                    write_manifest)
from lsh_tune.table._train import load_table_corpus, train_run

__all__ = ["build_table", "missing_runs", "prepare_table"]


def prepare_table(directory: str | Path, settings: TableSettings | None, configs: list[dict] | None) -> tuple:
    """(settings, configs) of the table in ``directory``: a new manifest, or the saved one (new
    ``configs`` are appended: a table can grow by a sample later).

    Raises:
        LSHUsageError: other ``settings`` than the saved ones, or no settings for a new table.
    """
    directory = Path(directory)
    if (directory / MANIFEST).exists():
        saved = read_manifest(directory)
        old = TableSettings.from_dict(saved["settings"])
        if settings is not None and settings != old:
            raise LSHUsageError(f"{directory} holds a table with other settings; continue it without --preset "
                                "overrides or build into another directory")
        have = {c["key"] for c in saved["configs"]}
        merged = saved["configs"] + [c for c in configs or [] if c["key"] not in have]
        if len(merged) != len(saved["configs"]):
            write_manifest(directory, old, merged)
        return old, merged
    if settings is None or not configs:
        raise LSHUsageError(f"{directory} holds no table yet: pass --preset (and the configurations)")
    write_manifest(directory, settings, configs)
    return settings, configs


def missing_runs(directory: str | Path, settings: TableSettings, configs: list[dict]) -> list[dict]:
    """Every run not finished yet: the references first, then seed by seed (every configuration at
    the first seed before any at the second, so a table cut short is whole at its first seed):
    ``{"key", "seed", "config"}`` each."""
    runs = [(REFERENCE_KEY, None, seed) for seed in settings.seeds]
    runs += [(c["key"], {k: v for k, v in c.items() if k != "key"}, seed)
             for seed in settings.seeds for c in configs]
    todo = []
    for key, config, seed in runs:
        if not is_complete(read_run(directory, key, seed), settings.epochs):
            todo.append({"key": key, "seed": seed, "config": config})
    return todo


def _trainable(spec: dict, *, directory: str, settings: dict, corpus, threads: int) -> None:
    import torch
    from ray import tune

    import ray

    torch.set_num_threads(max(1, threads))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"  # only a GPU Ray assigned
    run = spec["run"]

    def report(rec: dict) -> None:
        tune.report({"epoch": rec["epoch"], "val_ppl": rec["val_ppl"], "epoch_time_s": rec["epoch_time_s"],
                     "ls_time_s": rec["ls_time_s"]})

    done = train_run(directory, TableSettings.from_dict(settings), run["key"], run["config"], run["seed"], corpus,
                     device=device, on_epoch=report)
    tune.report({"epoch": settings["epochs"], "test_ppl": done["final"]["test_ppl"], "done_run": True})


def tune_storage_path(ray_storage: str | None) -> str:
    """Where Tune writes its own files: a URI (``s3://bucket/prefix``) as given, a directory (or
    ``file://`` one) made absolute, ``None`` a new temporary directory. A malformed URI (``s3:/b``,
    ``s3://``) is refused by :func:`lsh_tune.storage.is_uri` (``LSHUsageError`` naming ``ray_storage``),
    never taken for a local path."""
    from lsh_tune.storage import Storage, is_uri

    if ray_storage is None:
        return tempfile.mkdtemp(prefix="lsh-table-tune-")
    return ray_storage if is_uri(ray_storage, "ray_storage") else Storage(ray_storage).root


def build_table(directory: str | Path, settings: TableSettings | None = None, configs: list[dict] | None = None, *,
                cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, data_dir: str | None = None,
                ray_storage: str | None = None, limit: int | None = None) -> dict:
    """Create or continue the table in ``directory`` (see the module docstring).

    Args:
        limit: train at most this many missing runs in this sitting (``None``: all).

    Returns:
        ``{"trained", "failed", "missing", "annotated", "wall_s", "runs_total"}``.
    """
    import ray
    from ray import tune

    t0 = time.time()
    storage = None if ray_storage is None else tune_storage_path(ray_storage)  # a bad URI: before any write
    directory = Path(directory).resolve()
    settings, configs = prepare_table(directory, settings, configs)
    todo = missing_runs(directory, settings, configs)
    todo = todo if limit is None else todo[:limit]
    failed = 0
    if todo:
        if not ray.is_initialized():
            ray.init(include_dashboard=False)
        corpus = load_table_corpus(settings, data_dir)
        trainable = tune.with_parameters(_trainable, directory=str(directory), settings=settings.to_dict(),
                                         corpus=corpus, threads=int(max(1, cpus_per_trial)))
        storage = storage or tune_storage_path(None)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
            param_space={"run": tune.grid_search(todo)},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False),
            run_config=tune.RunConfig(storage_path=storage, name=f"build-{int(t0)}",
                                      verbose=0))
        failed = len(tuner.fit().errors)
    annotated = annotate_table(directory, settings, configs)
    left = missing_runs(directory, settings, configs)
    return {"trained": len(todo) - failed, "failed": failed, "missing": len(left), "annotated": annotated,
            "wall_s": time.time() - t0, "runs_total": (len(configs) + 1) * len(settings.seeds)}
