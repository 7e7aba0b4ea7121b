"""The result keys a candidate trial reports and the scheduler reads (Ray-free).

Every report carries :data:`CID_KEY` and ``epoch``. A round boundary sets :data:`BOUNDARY_KEY`
and carries what the search's ranking signal needs (its ``result_keys``,
:mod:`lsh_tune.search.signals`: ``val_loss``; the LS-based signals also the spectrum :data:`LS_KEY`
and :data:`OWN_FIT_DISTANCE_KEY`); a finalist's last report sets :data:`FINAL_KEY` and carries
``val_ppl`` and ``test_ppl``; a boundary re-reported after a restore sets :data:`REPLAY_KEY`. The trial of the dense
reference (:data:`REFERENCE_CID`) reports ``epoch`` and :data:`REFERENCE_EPOCHS_KEY` every epoch and
sets :data:`REFERENCE_DONE_KEY` on its last report.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["CID_KEY", "OWN_FIT_DISTANCE_KEY", "REFERENCE_CID", "REFERENCE_EPOCHS_KEY", "REFERENCE_DONE_KEY",
           "REFERENCE_LS_KEYS", "BOUNDARY_KEY", "FINAL_KEY", "REPLAY_KEY", "LS_KEY", "LS_EPOCHS_KEY",
           "LS_FIRST_EPOCH_KEY", "FINAL_METRIC_KEYS", "ROUND_INFO_KEYS", "require"]

#: The candidate id (also in every trial's config).
CID_KEY = "cid"
#: The ``cid`` of the trial that trains the dense reference (its config holds nothing else).
REFERENCE_CID = "reference"
#: In the reference trial's reports: the epochs it trains in all.
REFERENCE_EPOCHS_KEY = "epochs"
#: True on the reference trial's last report: the reference is in its cache.
REFERENCE_DONE_KEY = "reference_done"
#: In the reference trial's epoch reports: its new spectrum summarised (the LS curve while it trains;
#: Table 3's statistics of the finite exponents, nats per step, and the count of −inf exponents).
REFERENCE_LS_KEYS = ("ls_max", "ls_mean", "ls_variance", "ls_neg_inf")
#: True on a round boundary (every E epochs of the candidate's own training, and at max_epochs).
BOUNDARY_KEY = "lsh_boundary"
#: True on a finalist's last report.
FINAL_KEY = "lsh_final"
#: True when a trial re-reports its last boundary after loading its state.
REPLAY_KEY = "lsh_replay"
#: The candidate's Lyapunov spectrum (list of N exponents, nats per step) in boundary results.
LS_KEY = "ls"
#: In boundary results: the spectra of every epoch since the previous boundary, epoch 0 (before
#: training) included in the first round, as an (epochs, N) list; the first one's epoch is
#: :data:`LS_FIRST_EPOCH_KEY`. The pool-wide fit ranks on these per-epoch histories (paper §3).
LS_EPOCHS_KEY = "ls_epochs"
LS_FIRST_EPOCH_KEY = "ls_first_epoch"
#: The LS distance a trial reports, fitted on the dense reference and its own history only: a live
#: signal, not what ranks a round (with ``--ls-fit pool``, the default, each round is ranked in one
#: space fitted on the whole pool; those values are in ``lsh/state.json`` and the TensorBoard log).
OWN_FIT_DISTANCE_KEY = "ls_distance_own_fit"
#: Keys copied into the pool when a finalist finishes.
FINAL_METRIC_KEYS = ("epoch", "val_loss", "val_ppl", "test_loss", "test_ppl", "density", OWN_FIT_DISTANCE_KEY)
#: Keys kept with each round's metric (results table: ``last_*`` columns; the not-learning rule reads
#: the losses, :func:`lsh_tune.search.signals.not_learning`).
ROUND_INFO_KEYS = ("val_loss", "val_ppl", "train_loss", "density", OWN_FIT_DISTANCE_KEY)


def require(result: Mapping[str, Any], key: str, why: str) -> Any:
    """``result[key]``.

    Raises:
        ValueError: the key is missing (the message names the candidate, ``why`` and the keys present).
    """
    if key not in result:
        raise ValueError(f"result of candidate {result.get(CID_KEY)!r} lacks {key!r} ({why}); "
                         f"keys present: {sorted(result)}")
    return result[key]
