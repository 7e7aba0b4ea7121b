"""LSH with your own model and your own Ray Tune function trainable.

The model is a GRU language model written below, not one of lsh_tune's built-in architectures;
the trainable is a plain PyTorch loop that keeps its candidate sparse with
:class:`lsh_tune.sparse.Masking`. From lsh_tune it takes:

* ``LSHScheduler`` and ``LSHSearcher`` sharing one ledger (``lsh_tune.search.make_ledger``);
* the Lyapunov spectrum (``lsh_tune.lyapunov.lyapunov_spectrum``; any model with ``init_state``,
  ``embed`` and ``step`` gets its Jacobians by autograd) and its report entries
  (``lsh_tune.lyapunov.spectrum_metrics``);
* the report dict the scheduler reads (``lsh_tune.search.candidate_metrics``, ``replay_metrics``);
* result loggers that keep every ``result.json`` row when a paused trial resumes
  (``lsh_tune.search.result_logger_callbacks``).

A pool of 4 sparse GRUs (sparsity 0.67) on a 4,000-token slice of PTB, E = 1, LSH-TPE, one
finalist: 3 rounds (4 → 2 + 1 refill → 2 → 1), then the finalist trains to 4 epochs. About a
minute on 2 CPU cores::

    python docs/examples/own_trainable.py --storage-path /tmp/lsh-own
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import ray
import torch
import torch.nn.functional as F
from ray import tune
from torch import nn

from lsh_tune.data import batchify, bptt_batches, load_corpus
from lsh_tune.lyapunov import LSConfig, lyapunov_spectrum, spectrum_metrics, validation_tokens
from lsh_tune.search import (LSHScheduler, LSHSearcher, SearchLedger, candidate_metrics, is_boundary, make_ledger,
                             plan_rounds, replay_metrics, result_logger_callbacks)
from lsh_tune.seeds import derive_seed
from lsh_tune.sparse import DEATH_RATE_FLOOR, Masking, SparseConfig, cosine_death_rate

MAX_TOKENS = 4000        # of each PTB split (the vocabulary is the full corpus's 10,000 words)
BATCH, BPTT, LR, CLIP = 10, 35, 10.0, 0.25
SPARSITY = 0.67
POOL, ROUNDS_EVERY, FINAL_K, MAX_EPOCHS = 4, 1, 1, 4
REFERENCE_EPOCHS = 2
LS_CONFIG = LSConfig(k=2, steps=20, warmup=5, jacobian="autograd")
SEED = 0


class GRULanguageModel(nn.Module):
    """Embedding → one GRU layer → decoder. Tokens (T, B); the state is ``((h,),)`` with h (B, hidden).

    ``init_state``, ``embed`` and ``step`` are what the Lyapunov spectrum needs.
    """

    def __init__(self, vocab_size: int, emb: int = 32, hidden: int = 32) -> None:
        super().__init__()
        self.vocab_size, self.hidden_sizes = vocab_size, (hidden,)
        self.encoder = nn.Embedding(vocab_size, emb)
        self.gates_x = nn.Linear(emb, 3 * hidden)
        self.gates_h = nn.Linear(hidden, 3 * hidden)
        self.decoder = nn.Linear(hidden, vocab_size)

    def init_state(self, batch_size: int):
        h = self.encoder.weight.new_zeros(batch_size, self.hidden_sizes[0])
        return ((h,),)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens)

    def step(self, state, x: torch.Tensor):
        h = state[0][0]
        rx, zx, nx = self.gates_x(x).chunk(3, dim=-1)
        rh, zh, nh = self.gates_h(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
        n = torch.tanh(nx + r * nh)
        return (((1 - z) * n + z * h,),)

    def forward(self, tokens: torch.Tensor, state):
        outputs = []
        for x in self.embed(tokens):
            state = self.step(state, x)
            outputs.append(state[0][0])
        return self.decoder(torch.stack(outputs)), state


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, train: torch.Tensor,
                masking: Masking | None = None) -> None:
    """One epoch of truncated BPTT; the masks are re-applied after every optimizer step."""
    model.train()
    state = model.init_state(train.size(1))
    for x, y, _ in bptt_batches(train, BPTT):
        state = tuple(tuple(t.detach() for t in layer) for layer in state)
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        if masking is not None:
            masking.apply(model)


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor) -> float:
    """Mean NLL (nats per token) of ``data`` (n_steps, B)."""
    model.eval()
    state, total, count = model.init_state(data.size(1)), 0.0, 0
    for x, y, n in bptt_batches(data, BPTT):
        logits, state = model(x, state)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return total / count


def dense_reference(data: dict) -> np.ndarray:
    """The dense GRU's spectrum after each of its REFERENCE_EPOCHS epochs: (REFERENCE_EPOCHS, hidden)."""
    torch.manual_seed(SEED)
    model = GRULanguageModel(data["vocab_size"])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    history = []
    for _ in range(REFERENCE_EPOCHS):
        train_epoch(model, optimizer, data["train"])
        history.append(lyapunov_spectrum(model, data["ls_tokens"], LS_CONFIG))
    return np.stack(history)


def _restore(model, optimizer, masking) -> dict:
    """The trial's saved progress (``epoch``, ``ls_history``, ``last`` boundary report), if any."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return {"epoch": 0, "ls_history": [], "last": None}
    with checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / "state.pt", weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    masking.load_state_dict(saved["masking"])
    return saved["progress"]


def _report(metrics: dict, model, optimizer, masking, progress: dict) -> None:
    """``tune.report`` with a checkpoint of everything ``_restore`` reads."""
    with tempfile.TemporaryDirectory() as d:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "masking": masking.state_dict(), "progress": progress}, Path(d) / "state.pt")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def sparse_gru_trainable(config: dict, *, data: dict, schedule, reference_history: np.ndarray) -> None:
    """One candidate: ``config`` holds ``cid`` and the sparse-training hyperparameters of the space."""
    torch.set_num_threads(1)
    cid = config["cid"]
    seed = derive_seed(SEED, cid)
    torch.manual_seed(seed)
    model = GRULanguageModel(data["vocab_size"])
    sparse = SparseConfig(SPARSITY, **{k: v for k, v in config.items() if k != "cid"})
    masking = Masking(model, sparse, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    progress = _restore(model, optimizer, masking)
    if progress["last"] is not None:
        tune.report(replay_metrics(progress["last"]))  # lets the scheduler hold us while the round is open
    steps_per_epoch = sum(1 for _ in bptt_batches(data["train"], BPTT))
    for epoch in range(progress["epoch"] + 1, schedule.max_epochs + 1):
        train_epoch(model, optimizer, data["train"], masking)
        if epoch < schedule.max_epochs:  # prune and regrow once per epoch, cosine-decayed death rate
            rate = cosine_death_rate(epoch * steps_per_epoch, schedule.max_epochs * steps_per_epoch,
                                     sparse.death_rate, DEATH_RATE_FLOOR)
            masking.prune_and_regrow(model, rate, grads={k: p.grad for k, p in masking.params(model).items()})
        ls, boundary = None, is_boundary(schedule, epoch)
        if boundary:
            progress["ls_history"].append(lyapunov_spectrum(model, data["ls_tokens"], LS_CONFIG).tolist())
            ls = spectrum_metrics(progress["ls_history"], reference_history)
        test_loss = evaluate(model, data["test"]) if epoch == schedule.max_epochs else None
        metrics = candidate_metrics(schedule, cid, epoch, val_loss=evaluate(model, data["valid"]), ls=ls,
                                    test_loss=test_loss, density=masking.report()["density"])
        progress.update(epoch=epoch, last=metrics if boundary else progress["last"])
        _report(metrics, model, optimizer, masking, progress)


def load_data() -> dict:
    corpus = load_corpus("ptb", max_tokens=MAX_TOKENS)
    return {"vocab_size": len(corpus.vocab), "train": batchify(corpus.train, BATCH),
            "valid": batchify(corpus.valid, BATCH), "test": batchify(corpus.test, BATCH),
            "ls_tokens": validation_tokens(corpus, LS_CONFIG.k, LS_CONFIG.total_steps)}


def main(storage_path: str, name: str = "own_trainable") -> dict:
    """Run the search; returns the chosen candidate, the rounds, the planned rounds and the paths."""
    torch.set_num_threads(1)
    data = load_data()
    reference = dense_reference(data)
    experiment = Path(storage_path).resolve() / name
    ledger = make_ledger(pool_size=POOL, rounds_every=ROUNDS_EVERY, max_epochs=MAX_EPOCHS, final_k=FINAL_K,
                         hpo="tpe", metric="ls", seed=SEED, directory=experiment, reference_history=reference)
    trainable = tune.with_parameters(sparse_gru_trainable, data=data, schedule=ledger.pool.config,
                                     reference_history=reference)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(scheduler=LSHScheduler(ledger), search_alg=LSHSearcher(ledger),
                                    num_samples=-1, reuse_actors=True),  # the searcher says when it is done
        run_config=tune.RunConfig(name=name, storage_path=str(experiment.parent), verbose=0,
                                  callbacks=result_logger_callbacks()))  # keeps result.json rows across pauses
    tuner.fit()
    pool = SearchLedger.load(experiment).pool
    best = pool.best()
    return {"experiment_dir": str(experiment), "state": str(experiment / "lsh" / "state.json"),
            "best": None if best is None else {"cid": best.cid, "config": best.config, **best.final},
            "rounds": pool.rounds, "plan": plan_rounds(pool.config), "reference_history": reference.tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage-path", default=os.path.join(tempfile.gettempdir(), "lsh-own"))
    parser.add_argument("--name", default="own_trainable")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    summary = main(args.storage_path, args.name)
    print(json.dumps({k: v for k, v in summary.items() if k != "reference_history"}, indent=1, default=float))
    best = summary["best"]
    if best is not None:
        print(f"best {best['cid']} {best['config']}: val ppl {best['val_ppl']:.1f}, test ppl {best['test_ppl']:.1f}, "
              f"density {best['density']:.3f}")
