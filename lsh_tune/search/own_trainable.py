"""What your own Ray Tune function trainable needs to run under :class:`~lsh_tune.search.LSHScheduler`.

Ray-free. The scheduler and the searcher share one :class:`~lsh_tune.search.SearchLedger`
(:func:`make_ledger`); the trainable reads its schedule (``ledger.pool.config``, a
:class:`~lsh_tune.search.PoolConfig`) and reports every epoch through :func:`candidate_metrics`,
which writes the result keys of :mod:`lsh_tune.search.keys` and refuses a report the scheduler
could not rank. After restoring a checkpoint the trainable re-reports its last boundary with
:func:`replay_metrics` before training on (how the scheduler holds a trial whose round is open).

A trainable, in outline (``docs/examples/own_trainable.py`` is a complete one)::

    def trainable(config, *, schedule, reference_history):
        cid = config["cid"]                         # plus the hyperparameters of the space
        ...                                         # build; restore and tune.report(replay_metrics(last))
        for epoch in range(start + 1, schedule.max_epochs + 1):
            val_loss = train_one_epoch_and_validate()
            ls = None
            if is_boundary(schedule, epoch):
                history.append(lyapunov_spectrum(model, tokens, ls_config))
                ls = spectrum_metrics(history, reference_history)
            test_loss = evaluate_test() if epoch == schedule.max_epochs else None
            tune.report(candidate_metrics(schedule, cid, epoch, val_loss=val_loss, ls=ls, test_loss=test_loss),
                        checkpoint=...)             # a checkpoint at least on every boundary
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from lsh_tune.errors import LSHUsageError, check_int
from lsh_tune.search._ledger import SearchLedger
from lsh_tune.search._ls_fit import LSSpace
from lsh_tune.search._pool import PoolConfig
from lsh_tune.search.keys import BOUNDARY_KEY, CID_KEY, FINAL_KEY, REPLAY_KEY
from lsh_tune.search.signals import make_signal, signal_class
from lsh_tune.space import DEFAULT_SPACE, SearchSpace
from lsh_tune.train import perplexity

__all__ = ["candidate_metrics", "is_boundary", "make_ledger", "replay_metrics"]


def make_ledger(*, pool_size: int, rounds_every: int, max_epochs: int, hpo: str = "tpe", metric: str = "ls",
                final_k: int = 2, max_rounds: int | None = None, epoch_budget: int | None = None, seed: int = 0,
                space: SearchSpace = DEFAULT_SPACE, directory: str | os.PathLike | None = None,
                reference_history: Sequence | np.ndarray | None = None, ls_space: LSSpace | None = None,
                untrained_ppl: float | None = None, **generator_kwargs: Any) -> SearchLedger:
    """A new ledger for ``LSHScheduler(ledger)`` and ``LSHSearcher(ledger)``.

    Args:
        pool_size: initial number of candidates |P|.
        rounds_every: E, epochs of a candidate's own training per round.
        max_epochs: epochs of a finalist's own training (the error names the minimum).
        hpo: refill generator, one of :data:`~lsh_tune.search.HPO_METHODS`.
        metric: the ranking signal (:data:`~lsh_tune.search.signals.SIGNALS`): ``ls`` (LS distance to the
            dense reference), ``loss`` (``val_loss``) or ``hybrid`` (the mean of the two ranks).
        final_k: halving stops at this many candidates.
        max_rounds, epoch_budget: optional selection budgets (rounds; Σ n·E candidate-epochs).
        seed: seed of the generator (and of t-SNE in the default LS space).
        space: the hyperparameters every trial config holds besides ``cid``.
        directory: where the state lives (``<directory>/lsh/state.json``, kept across a
            ``Tuner.restore``); ``None`` keeps it in memory.
        reference_history: the dense reference's spectra (E_ref, N), signals that need a reference
            only: each round is then ranked in one LS space fitted on the reference and every ranked
            candidate's reported spectra (the paper). Without it, ``ls`` ranks by the
            ``ls_distance_own_fit`` reported.
        ls_space: embedding/distance of that fit (default: PCA, L2, t-SNE seed ``seed``).
        untrained_ppl: validation perplexity of an untrained model, e.g. the vocabulary size: a
            candidate above it at a round boundary is ranked behind every candidate that is learning
            (``None``: only non-finite losses and a validation perplexity more than doubled since the
            previous round count as not learning; :func:`lsh_tune.search.signals.not_learning`).
        **generator_kwargs: passed to the generator (``grid``: ``death_rate``).

    Raises:
        LSHUsageError: a bad schedule, an unknown ``hpo``/``metric``, a reference with a signal that
            needs none (``loss``), or a ``directory`` that already holds a search.
    """
    if reference_history is not None and not signal_class(metric).needs_reference:
        raise LSHUsageError(f"reference_history is for a signal that ranks spectra; metric={metric!r} ranks by "
                            f"{signal_class(metric)().describe()} and needs no reference")
    schedule = SearchLedger.pool_config_for(hpo, pool_size=pool_size, rounds_every=rounds_every,
                                            max_epochs=max_epochs, final_k=final_k, max_rounds=max_rounds,
                                            epoch_budget=epoch_budget, metric=metric, seed=seed,
                                            untrained_ppl=untrained_ppl)
    space_ = ls_space or LSSpace(seed=seed)
    signal = make_signal(metric, {"ls_embedding": space_.embedding, "ls_distance": space_.distance,
                                  "seed": space_.seed})
    ls_fit = None if reference_history is None else signal.make_fit(reference_history)
    return SearchLedger.create(schedule, hpo, space, directory, ls_fit=ls_fit, signal=signal, **generator_kwargs)


def is_boundary(schedule: PoolConfig, epoch: int) -> bool:
    """Whether a candidate's ``epoch`` (1-based, of its own training) ends a round: every E, and the last."""
    return epoch % schedule.rounds_every == 0 or epoch == schedule.max_epochs


def _check_ls(schedule: PoolConfig, epoch: int, ls: Mapping[str, Any] | None) -> None:
    signal = signal_class(schedule.metric)
    if not signal.needs_reference:
        return
    needed = tuple(k for k in signal.result_keys if k != "val_loss")  # val_loss: always reported
    if ls is None or any(k not in ls for k in needed):
        raise LSHUsageError(f"epoch {epoch} ends a round of a search ranked by {signal.label} (metric "
                            f"{schedule.metric!r}): pass ls=lsh_tune.lyapunov.spectrum_metrics(history, "
                            f"reference_history) (it needs {', '.join(needed)})")


def candidate_metrics(schedule: PoolConfig, cid: str, epoch: int, *, val_loss: float,
                      ls: Mapping[str, Any] | None = None, test_loss: float | None = None,
                      **extra: Any) -> dict[str, Any]:
    """The ``tune.report`` metrics of one trained epoch of candidate ``cid``.

    Args:
        schedule: the search's schedule, ``ledger.pool.config``.
        cid: the candidate id, ``config["cid"]``.
        epoch: epochs of its own training so far (1 … ``schedule.max_epochs``).
        val_loss: mean validation NLL (nats per token); ``val_ppl`` = exp of it.
        ls: :func:`lsh_tune.lyapunov.spectrum_metrics` of its spectra (needed on a boundary of a
            search whose signal needs a reference; on other epochs it is reported if given).
        test_loss: mean test NLL, needed on the last epoch (``max_epochs``).
        **extra: further metrics (``density``, timings ...); they may not replace the above.

    Returns:
        ``{"cid", "epoch", "val_loss", "val_ppl", "lsh_boundary", "lsh_final", "lsh_replay": False}``,
        on a boundary also ``round`` and the ``ls`` entries, on the last epoch ``test_loss``/``test_ppl``.

    Raises:
        LSHUsageError: ``epoch`` out of range, ``ls`` missing on a boundary of an LS-ranked search,
            ``test_loss`` missing on the last epoch, or ``extra`` naming a key set here.
    """
    check_int("epoch", epoch, 1)
    if epoch > schedule.max_epochs:
        raise LSHUsageError(f"epoch={epoch} is past the schedule's max_epochs={schedule.max_epochs}")
    boundary, final = is_boundary(schedule, epoch), epoch == schedule.max_epochs
    out: dict[str, Any] = {CID_KEY: str(cid), "epoch": int(epoch), "val_loss": float(val_loss),
                           "val_ppl": perplexity(float(val_loss)), BOUNDARY_KEY: boundary, FINAL_KEY: final,
                           REPLAY_KEY: False}
    if boundary:
        _check_ls(schedule, epoch, ls)
        out["round"] = math.ceil(epoch / schedule.rounds_every)
    out.update(ls or {})
    if final:
        if test_loss is None:
            raise LSHUsageError(f"epoch {epoch} is the last (max_epochs): pass test_loss")
        out.update(test_loss=float(test_loss), test_ppl=perplexity(float(test_loss)))
    clash = sorted(set(extra) & set(out))
    if clash:
        raise LSHUsageError(f"extra metrics {clash} would replace keys the scheduler reads")
    out.update(extra)
    return out


def replay_metrics(last_boundary: Mapping[str, Any]) -> dict[str, Any]:
    """``last_boundary`` (a :func:`candidate_metrics` result) marked as re-reported after a restore.

    Raises:
        LSHUsageError: ``last_boundary`` is not a round-boundary report.
    """
    if not last_boundary.get(BOUNDARY_KEY):
        raise LSHUsageError("only a round-boundary report is replayed; keep the last one with the checkpoint")
    return {**last_boundary, REPLAY_KEY: True}
