"""Train one run of a table to the end, logging every epoch (Ray-free; resumable).

A run is a configuration (or the dense reference, key :data:`~lsh_tune.table._format.REFERENCE_KEY`)
at one training seed. A candidate is built exactly as a search builds it
(:func:`lsh_tune.search.candidate.build_candidate`, seeded ``crc32(seed, key)``); the reference is
the dense model of the same spec, seeded ``seed`` as a search seeds its reference, so a real search
of seed ``s`` in the table's setting (``lsh-tune search --table``) trains the table's reference at ``s``. Before training (epoch 0)
and after every epoch the spectrum is computed under every state convention of the table.

Resume: after every epoch the full training state and the records so far are written
all-or-nothing to ``partial/<key>__s<seed>.pt``; a new call continues from it (an unreadable or
foreign file is discarded and the run restarts cleanly). Exponents are stored to 7 significant digits (float32's precision,
half the bytes of a float64 repr). The run file itself is written only when
the last epoch is done, so a half-written result is never read.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from lsh_tune.errors import LSHUsageError
from lsh_tune.table._format import (PARTIAL, REFERENCE_KEY, TableSettings, is_complete, read_run, run_name,
                                    write_run)

__all__ = ["load_table_corpus", "train_run", "partial_path"]


def load_table_corpus(settings: TableSettings, data_dir: str | None = None):
    """The table's corpus: ``train_tokens`` of the training split, ``eval_tokens`` (or all) of the others."""
    from lsh_tune.data import load_corpus

    return load_corpus(settings.corpus, data_dir).sliced(settings.train_tokens, settings.eval_tokens)


def partial_path(table: str | Path, key: str, seed: int) -> Path:
    """Where the state of run ``key`` at ``seed`` lives while it trains."""
    return Path(table) / PARTIAL / f"{run_name(key, seed)}.pt"


def _build(settings: TableSettings, key: str, config: dict | None, seed: int, corpus, device: str):
    """(trainer, sparse hook or None) of the run, freshly initialised."""
    from lsh_tune.models import ModelSpec, TrainSpec, build_model
    from lsh_tune.train import Trainer
    from lsh_tune.train.trainer import seed_everything

    if config is None:  # seeded as a search seeds its reference: a search of seed s trains this very run
        seed_everything(seed)
        model = build_model(ModelSpec.from_dict(settings.model_spec), len(corpus.vocab))
        return Trainer(model, corpus, TrainSpec(**settings.train_spec), seed=seed, device=device,
                       max_epochs=settings.epochs), None
    from lsh_tune.search.candidate import TrialSettings, build_candidate

    names = tuple(settings.search_space().names)
    trial = TrialSettings(model_spec=settings.model_spec, train_spec=settings.train_spec, sparsity=settings.sparsity,
                          rounds_every=1, max_epochs=settings.epochs, seed=seed, hp_names=names,
                          sparse_kwargs=dict(settings.sparse))
    return build_candidate(trial, {"cid": key, **config}, corpus, device=device)


def _spectra(trainer, settings: TableSettings, corpus) -> tuple[dict, float]:
    """``{state: spectrum}`` of the trainer's evaluation weights and the seconds it took."""
    from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum, validation_tokens

    t0 = time.perf_counter()
    out = {}
    for state in settings.ls_states:
        cfg = LSConfig(**{**settings.ls, "state": state})
        tokens = validation_tokens(corpus, k=cfg.k, length=cfg.total_steps)
        with trainer.evaluation_weights():
            out[state] = [float(f"{v:.7g}") for v in lyapunov_spectrum(trainer.model, tokens, cfg)]
    return out, time.perf_counter() - t0


def _resume(trainer, path: Path) -> list[dict]:
    """The records saved with the partial state at ``path`` (the trainer restored); ``[]`` for a fresh start."""
    if not path.exists():
        return []
    try:
        saved = trainer.load(path)
        records = list(saved["table"]["records"])
    except (LSHUsageError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        raise _Restart from None
    if len(records) != trainer.epoch + 1:
        path.unlink(missing_ok=True)
        raise _Restart
    return records


class _Restart(Exception):
    """The partial state is unusable: rebuild the run from scratch."""


def train_run(table: str | Path, settings: TableSettings, key: str, config: dict | None, seed: int, corpus, *,
              device: str = "cpu", on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train run ``key`` (``config``; ``None`` = the dense reference) at ``seed`` to ``settings.epochs``.

    Returns the run (see :mod:`lsh_tune.table._format`); a run already complete in ``table`` is
    returned untouched (nothing trains). ``on_epoch(record)`` is called after each epoch trained here.
    """
    done = read_run(table, key, seed)
    if is_complete(done, settings.epochs):
        return done
    path = partial_path(table, key, seed)
    try:
        trainer, hook = _build(settings, key, config, seed, corpus, device)
        records = _resume(trainer, path)
    except _Restart:
        trainer, hook = _build(settings, key, config, seed, corpus, device)
        records = []
    if not records:
        ls, ls_time = _spectra(trainer, settings, corpus)
        records.append({"epoch": 0, "val_loss": trainer.evaluate("valid"), "epoch_time_s": 0.0,
                        "ls_time_s": ls_time, "ls": ls})
    while trainer.epoch < settings.epochs:
        m = trainer.train_epoch()
        ls, ls_time = _spectra(trainer, settings, corpus)
        rec = {"epoch": int(m["epoch"]), "train_loss": m["train_loss"], "val_loss": m["val_loss"],
               "val_ppl": m["val_ppl"], "epoch_time_s": m["epoch_time_s"], "ls_time_s": ls_time, "ls": ls}
        records.append(rec)
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save(path, table={"records": records, "key": key, "seed": seed})
        if on_epoch is not None:
            on_epoch(rec)
    return _finish(table, trainer, hook, key, config, seed, records, path)


def _finish(table, trainer, hook, key, config, seed, records, path: Path) -> dict:
    from lsh_tune.train import perplexity

    test_loss = trainer.evaluate("test")
    final = {"val_loss": records[-1]["val_loss"], "val_ppl": records[-1]["val_ppl"], "test_loss": test_loss,
             "test_ppl": perplexity(test_loss),
             "density": 1.0 if hook is None else float(hook.masking.report()["density"])}
    run = {"key": key, "config": config or {}, "seed": int(seed), "epochs": records, "final": final}
    write_run(table, run)
    path.unlink(missing_ok=True)
    return run
