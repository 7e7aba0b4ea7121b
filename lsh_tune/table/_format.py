"""The training table: what was trained (:class:`TableSettings`), one file per run, a manifest (Ray-free).

A *table* trains every configuration of a space once per training seed to the end and logs each
epoch, so any search policy can be replayed against it in seconds (:mod:`lsh_tune.table.replay`).
Layout of a table directory (small, plain JSON, meant to be committed):

* ``manifest.json`` — ``{"version", "settings": TableSettings.to_dict(), "configs": [{"key", ...config}]}``;
  the configurations in the order they were added (grid first, then the seeded sample);
* ``rows/<key>__s<seed>.json`` — one finished run (a configuration, or the dense reference
  ``reference``, at one training seed): ``{"key", "config", "seed", "epochs": [record, ...],
  "final": {...}}``. ``epochs[e]`` is epoch ``e`` (0 = before training): ``train_loss``,
  ``val_loss``, ``val_ppl`` (none at 0), ``epoch_time_s``, ``ls_time_s`` (seconds, one thread),
  ``ls`` = ``{state convention: spectrum (N exponents, nats/step)}`` and, once the reference of the
  same seed is tabulated, ``distance`` = ``{"<state>/<embedding>/<metric>": value}`` (fitted on the
  reference's history and this run's history up to ``e``, :mod:`lsh_tune.table._distances`).
  ``final``: ``val_loss``, ``val_ppl``, ``test_loss``, ``test_ppl``, ``density`` after the last epoch.
  A run file is written all-or-nothing when the run is complete; a run in progress lives in
  ``partial/`` (its training state, git-ignored) and is never read as a result.

−inf exponents are stored as ``-Infinity`` (Python's JSON), as elsewhere in the package.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from lsh_tune.data import KNOWN_CORPORA
from lsh_tune.errors import LSHUsageError, check_choice, check_int, check_range
from lsh_tune.lyapunov import CONVENTIONS
from lsh_tune.lyapunov.distance import EMBEDDINGS, METRICS
from lsh_tune.storage import atomic_write_json

__all__ = ["TABLE_PRESETS", "TABLE_VERSION", "REFERENCE_KEY", "TableSettings", "config_key", "run_name",
           "table_preset", "read_manifest", "write_manifest", "read_run", "write_run", "run_path", "is_complete"]

TABLE_VERSION = 1
#: The ``key`` of the dense reference's runs.
REFERENCE_KEY = "reference"
MANIFEST = "manifest.json"
RUNS = "rows"
PARTIAL = "partial"


@dataclass(frozen=True)
class TableSettings:
    """What every run of a table shares (``lsh-tune table build``: one option per field but the dicts,
    which the preset gives).

    Args:
        model_spec, train_spec: :meth:`ModelSpec.to_dict` / :meth:`TrainSpec.to_dict` of the runs.
        sparsity: target sparsity of every candidate.
        epochs: epochs of every run (the finalists' ``max_epochs`` of a replayed search).
        seeds: training seeds; each configuration is trained once per seed.
        corpus: ``ptb``, ``wikitext-2`` or a directory.
        train_tokens: keep the first ``train_tokens`` training tokens (``None``: all).
        eval_tokens: keep the first ``eval_tokens`` validation/test tokens (``None``: the whole splits).
        ls: :class:`~lsh_tune.lyapunov.LSConfig` fields shared by every spectrum (``state`` aside).
        ls_states: state conventions logged every epoch (``h``: the paper's, ``hc``).
        sparse: extra :class:`~lsh_tune.sparse.SparseConfig` fields (``init_scale`` ...).
        space: :meth:`SearchSpace.to_dict` of the tabulated space.
        embeddings, metrics: LS spaces of the logged distances (:data:`lsh_tune.lyapunov.EMBEDDINGS`).
    """

    model_spec: dict = field(metadata={"cli": False})  # the preset's (``lsh-tune table build --preset``)
    train_spec: dict = field(metadata={"cli": False})
    sparsity: float = field(metadata={"help": "target sparsity of every candidate"})
    epochs: int = field(metadata={"help": "epochs of every run"})
    seeds: tuple[int, ...] = field(default=(0, 1), metadata={
        "help": "training seeds: every configuration is trained once per seed, e.g. 0,1"})
    corpus: str = field(default="ptb", metadata={
        "help": f"{', '.join(KNOWN_CORPORA)} or a directory with train/valid/test"})
    train_tokens: int | None = field(default=None, metadata={"help": "keep the first N training tokens"})
    eval_tokens: int | None = field(default=None, metadata={"help": "keep the first N validation/test tokens"})
    ls: dict = field(default_factory=lambda: {"k": 2, "steps": 35, "warmup": 10}, metadata={"cli": False})
    ls_states: tuple[str, ...] = field(default=("h", "hc"), metadata={
        "help": f"state conventions whose spectra are logged every epoch ({', '.join(CONVENTIONS)})"})
    sparse: dict = field(default_factory=dict, metadata={"cli": False})
    space: dict | None = field(default=None, metadata={"cli": False})
    embeddings: tuple[str, ...] = field(default=("pca", "raw", "tsne"), metadata={
        "help": f"LS-space embeddings of the logged distances ({', '.join(EMBEDDINGS)})"})
    metrics: tuple[str, ...] = field(default=("l2", "cosine"), metadata={
        "help": f"distances in LS space of the logged distances ({', '.join(METRICS)})"})

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1)
        check_range("sparsity", self.sparsity, 0.0, 1.0, low_open=True, high_open=True)
        check_int("train_tokens", self.train_tokens, 1, allow_none=True)
        check_int("eval_tokens", self.eval_tokens, 1, allow_none=True)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise LSHUsageError(f"seeds={list(self.seeds)} must be distinct and at least one")
        for s in self.seeds:
            check_int("seed", s, 0)
        if not self.ls_states:
            raise LSHUsageError("ls_states must name at least one state convention (h, hc)")
        for name, values, allowed in (("ls_states", self.ls_states, CONVENTIONS),
                                      ("embeddings", self.embeddings, EMBEDDINGS), ("metrics", self.metrics, METRICS)):
            for v in values:
                check_choice(name, v, allowed)
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "ls_states", tuple(self.ls_states))
        object.__setattr__(self, "embeddings", tuple(self.embeddings))
        object.__setattr__(self, "metrics", tuple(self.metrics))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TableSettings":
        d = dict(d)
        for k in ("seeds", "ls_states", "embeddings", "metrics"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def search_space(self):
        """The tabulated :class:`~lsh_tune.space.SearchSpace`."""
        from lsh_tune.space import DEFAULT_SPACE, SearchSpace

        return DEFAULT_SPACE if self.space is None else SearchSpace.from_dict(self.space)

    def search_setting(self) -> dict:
        """The training setting a real search of this table trains in (``SearchConfig.setting``,
        ``lsh-tune search --table``): ``model_spec``, ``train_spec``, ``corpus``, ``train_tokens``,
        ``eval_tokens``, ``sparse`` (sparse-init options)."""
        return {"model_spec": dict(self.model_spec), "train_spec": dict(self.train_spec), "corpus": self.corpus,
                "train_tokens": self.train_tokens, "eval_tokens": self.eval_tokens, "sparse": dict(self.sparse)}

    def distance_names(self) -> list[str]:
        """Every ``<state>/<embedding>/<metric>`` a run logs per epoch."""
        return [f"{s}/{e}/{m}" for s in self.ls_states for e in self.embeddings for m in self.metrics]


def _bench() -> TableSettings:
    """The ``bench`` table: a 2-layer LSTM of 128 on the first 150k PTB training tokens, 6 epochs (see
    BENCHMARKS.md: at 12 the constant lr 20 overfits the dense model from epoch 8)."""
    model = {"model": "stacked_lstm", "emb": 128, "hidden": [128, 128], "tied": False,
             "dropouts": [0.0, 0.0, 0.0, 0.0], "depth": 1, "n_experts": 0, "dropoutl": 0.0, "wdrop": 0.0}
    train = {"lr": 20.0, "batch_size": 20, "bptt": 35, "epochs": 6}
    return TableSettings(model, train, sparsity=0.67, epochs=6, seeds=(0, 1), train_tokens=150_000,
                         sparse={"init_scale": True})


def _tiny() -> TableSettings:
    """A table the tests build in seconds: the ``tiny`` LSTM on a 6k-token PTB slice, 3 epochs."""
    model = {"model": "stacked_lstm", "emb": 32, "hidden": [32, 32], "tied": False,
             "dropouts": [0.0, 0.0, 0.0, 0.0], "depth": 1, "n_experts": 0, "dropoutl": 0.0, "wdrop": 0.0}
    train = {"lr": 20.0, "batch_size": 10, "bptt": 35, "epochs": 3}
    return TableSettings(model, train, sparsity=0.67, epochs=3, seeds=(0, 1), train_tokens=6000,
                         eval_tokens=3000, ls={"k": 1, "steps": 12, "warmup": 3}, sparse={"init_scale": True},
                         embeddings=("pca", "raw"))


#: Named table settings: ``bench`` (the committed evidence table), ``tiny`` (tests).
TABLE_PRESETS = {"bench": _bench, "tiny": _tiny}


def table_preset(name: str, **overrides: Any) -> TableSettings:
    """The settings named ``name`` (:data:`TABLE_PRESETS`), fields replaced by ``overrides``."""
    if name not in TABLE_PRESETS:
        raise LSHUsageError(f"table preset {name!r} is unknown; choose one of: {', '.join(TABLE_PRESETS)}")
    return replace(TABLE_PRESETS[name](), **{k: v for k, v in overrides.items() if v is not None})


def config_key(config: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """A file-name-safe key of ``config``: its values of ``names`` joined by ``-`` (death rate as ``dr0.80``).

    >>> config_key({"sparse_init": "ER", "death": "SET", "death_rate": 0.8}, ("sparse_init", "death", "death_rate"))
    'ER-SET-dr0.80'
    """
    parts = []
    for n in names:
        v = config[n]
        parts.append(f"dr{float(v):.2f}" if n == "death_rate" else str(v))
    return "-".join(parts)


def run_name(key: str, seed: int) -> str:
    return f"{key}__s{int(seed)}"


def run_path(table: str | Path, key: str, seed: int) -> Path:
    return Path(table) / RUNS / f"{run_name(key, seed)}.json"


def read_manifest(table: str | Path) -> dict:
    """``manifest.json`` of ``table``.

    Raises:
        LSHUsageError: no manifest, an unreadable one, or another format version.
    """
    path = Path(table) / MANIFEST
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LSHUsageError(f"{path} does not exist: not a table (build one with `lsh-tune table build`)") from None
    except ValueError as e:
        raise LSHUsageError(f"{path} is not valid JSON: {e}") from None
    if d.get("version") != TABLE_VERSION:
        raise LSHUsageError(f"{path}: table version {d.get('version')!r}, expected {TABLE_VERSION}")
    return d


def write_manifest(table: str | Path, settings: TableSettings, configs: list[dict]) -> None:
    """Write the manifest all-or-nothing (configs as ``{"key", ...config}``)."""
    Path(table).mkdir(parents=True, exist_ok=True)
    atomic_write_json({"version": TABLE_VERSION, "settings": settings.to_dict(), "configs": configs},
                      Path(table) / MANIFEST, indent=1)


def is_complete(run: Mapping[str, Any] | None, epochs: int) -> bool:
    """Whether ``run`` holds every epoch 0..``epochs`` and its final metrics."""
    return bool(run) and len(run.get("epochs", ())) == epochs + 1 and "test_ppl" in (run.get("final") or {})


def read_run(table: str | Path, key: str, seed: int) -> dict | None:
    """The finished run ``key`` at ``seed``; ``None`` when absent or unreadable (then it is retrained)."""
    path = run_path(table, key, seed)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def write_run(table: str | Path, run: dict) -> Path:
    """Write a finished run all-or-nothing; returns its path."""
    path = run_path(table, run["key"], run["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run, path, indent=None)
    return path
