"""Every file a search reads or writes, by name: the one place each name is defined (Ray-free, no imports).

Relative to the experiment directory ``<storage_path>/<name>/`` (a :class:`~lsh_tune.storage.Storage`:
a directory shared by the nodes, or an object-store URI), besides Tune's own files:

* ``lsh/`` — the search's own state, not at the top level, where Tune's restore would overwrite it
  with a stale copy (Tune copies every top-level ``*.json``/``*.pkl`` into its staging directory on
  restore and syncs that copy back up later): :data:`CONFIG_FILE` (the
  :class:`~lsh_tune.search.config.SearchConfig`, a resume reuses it), :data:`STATE_FILE` (the
  ledger: pool, rounds, rankings, statuses), :data:`REFERENCE_LS_FILE` and :data:`SPECTRA_DIR`
  (the spectra the pool-wide LS fit ranks on, :mod:`lsh_tune.search._ls_fit`);
* :func:`candidate_dir` ``candidates/<cid>/`` — a candidate's newest full training state
  :data:`STATE_NAME`, its epoch :data:`META_NAME` and its spectra :data:`LS_NAME`
  (:mod:`lsh_tune.search.candidate`);
* :data:`EPOCH_LOG` — one record per trained candidate epoch (the exactly-once audit);
* :data:`EVENTS_FILE` — the search's events (:mod:`lsh_tune.search.views.events`);
* after the search: :data:`RESULTS_JSON`, :data:`RESULTS_CSV`, :data:`SUMMARY_FILE`, :data:`BEST_MODEL` and
  :data:`BEST_MODEL_SPEC` (:mod:`lsh_tune.search.run.outputs`), then :data:`FIGURES_DIR` and
  :data:`TENSORBOARD_DIR` (:mod:`lsh_tune.search.views.figures`, :mod:`lsh_tune.search.views.tensorboard`).

Relative to the storage path (shared by every search stored there): :data:`REFERENCE_CACHE`, the dense
references (:mod:`lsh_tune.search.run.reference`): ``<key>/`` holds a reference's :data:`STATE_NAME`,
:data:`META_NAME` and :data:`EPOCH_LOG` as a candidate directory does, ``<key>`` + :data:`LEASE_SUFFIX`
who trains it.
"""
from __future__ import annotations

__all__ = ["BEST_MODEL", "BEST_MODEL_SPEC", "CANDIDATES_DIR", "CONFIG_FILE", "EPOCH_LOG", "EVENTS_FILE", "FIG1_FILE",
           "FIGURES_DIR", "LEASE_SUFFIX", "LS_NAME", "META_NAME", "RANKING_VS_FINAL_FILE", "REFERENCE_CACHE",
           "REFERENCE_LS_FILE", "RESULTS_CSV", "RESULTS_JSON", "SPECTRA_DIR", "STATE_FILE", "STATE_NAME",
           "SUMMARY_FILE", "TENSORBOARD_DIR", "TUNE_PICKLE", "TUNE_STATE_PREFIX", "candidate_dir", "round_space_file"]

# ------------------------------------------------------------ lsh/: the search's own state
#: The saved config.
CONFIG_FILE = "lsh/search.json"
#: The ledger's state (:class:`~lsh_tune.search.SearchLedger`).
STATE_FILE = "lsh/state.json"
#: The dense reference's LS history, once known (the pool-wide LS fit).
REFERENCE_LS_FILE = "lsh/reference_ls.json"
#: ``<cid>.json`` per candidate: ``{"<epoch>": spectrum}`` (the pool-wide LS fit).
SPECTRA_DIR = "lsh/spectra"

# ------------------------------------------------------------ candidates (and a reference's directory)
#: The candidates' directories (:func:`candidate_dir`).
CANDIDATES_DIR = "candidates"
#: The newest full training state of a candidate or of the dense reference (``torch.save``).
STATE_NAME = "state.pt"
#: ``{"epoch", "cid"}`` (a reference's: ``{"epoch", "key"}``) of that state, written after it.
META_NAME = "state.json"
#: A candidate's spectra, one per epoch (epoch 0 first).
LS_NAME = "ls_history.json"
#: The epoch log: one record per trained epoch (:meth:`~lsh_tune.storage.Storage.append_record`).
EPOCH_LOG = "epochs"

# ------------------------------------------------------------ what a search shows and leaves
#: The events of the search, one JSON object per line.
EVENTS_FILE = "events.jsonl"
#: One row per candidate (JSON; CSV with list columns JSON-encoded).
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
#: The summary of a finished search (the chosen configuration, the rounds, the reference's scores).
SUMMARY_FILE = "best.json"
#: The chosen candidate's weights, readable by torch alone: ``torch.save`` of a plain dict whose
#: ``state_dict`` holds every masked weight as a sparse CSR tensor (format
#: :data:`lsh_tune.sparse.SPARSE_CSR_FORMAT`).
BEST_MODEL = "best_model.pt"
#: The same file's metadata as JSON (model spec, vocabulary size, density per tensor, format, config).
BEST_MODEL_SPEC = "best_model.json"
#: The figures' directory and its files (:func:`round_space_file` per round).
FIGURES_DIR = "figures"
FIG1_FILE = "fig1.png"
RANKING_VS_FINAL_FILE = "ranking_vs_final.png"
#: The experiment-level TensorBoard log.
TENSORBOARD_DIR = "tensorboard"

# ------------------------------------------------------------ Tune's own files (read, never written)
#: Tune's pickled Tuner (scheduler, searcher, trainable and callbacks, by module path).
TUNE_PICKLE = "tuner.pkl"
#: Tune's experiment snapshots ``experiment_state-<time>.json``.
TUNE_STATE_PREFIX = "experiment_state-"

# ------------------------------------------------------------ relative to the storage path
#: The dense references of every search under the storage path (a search may not be named so).
REFERENCE_CACHE = "reference_cache"
#: ``<key>`` + this: the lease of the worker training reference ``<key>``.
LEASE_SUFFIX = ".lease.json"


def candidate_dir(cid: str) -> str:
    """Candidate ``cid``'s directory: its mirrored state (:data:`STATE_NAME`, :data:`META_NAME`, :data:`LS_NAME`)."""
    return f"{CANDIDATES_DIR}/{cid}"


def round_space_file(r: int) -> str:
    """The figure of round ``r``'s LS space (``r`` 0-based; the file name counts from 1)."""
    return f"ls_space_round{r + 1}.png"
