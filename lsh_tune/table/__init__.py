"""Training tables for hyperpruning: every configuration trained once per seed, every epoch logged,
and searches replayed against them in seconds (Ray-free; the Ray adapters are
:mod:`lsh_tune.table.tune_build` and :mod:`lsh_tune.table.tune_replay`, imported on use).

Format: :mod:`lsh_tune.table._format`; one run: :mod:`lsh_tune.table._train`; replay:
:mod:`lsh_tune.table.replay`.
"""
from __future__ import annotations

from lsh_tune.table._distances import annotate_run, annotate_table
from lsh_tune.table._format import (REFERENCE_KEY, TABLE_PRESETS, TableSettings, config_key, read_manifest, read_run,
                                    table_preset)
from lsh_tune.table._table import Table, plan_configs
from lsh_tune.table._train import load_table_corpus, train_run
from lsh_tune.table.replay import ReplaySettings, makespan, replay_search, replay_sequential, time_to_targets

__all__ = ["REFERENCE_KEY", "TABLE_PRESETS", "ReplaySettings", "Table", "TableSettings", "annotate_run",
           "annotate_table", "config_key", "load_table_corpus", "makespan", "plan_configs", "read_manifest",
           "read_run", "replay_search", "replay_sequential", "table_preset", "time_to_targets", "train_run"]
