"""The catalogue of bad input, run through the command line: one line, exit 2, no traceback, nothing written.

Every case runs ``lsh_tune.cli.main(argv)`` in-process (``ray.init`` is replaced by a function
that fails the test: validation must happen before Ray starts) and asserts: exit code 2, stderr
is exactly one line ``lsh-tune: error: ...`` naming the value (``needle``), nothing on stdout, and
the files under the test's world (experiment directories, run directories, corpora) unchanged.
The world — bad corpora made from real PTB lines, real tiny checkpoints of each kind, saved
searches with corrupt or foreign files — is built once per module. The experiment scripts and
the Python API are covered at the end, and one subprocess checks the real exit path.
"""
from __future__ import annotations

import json
import lzma
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lsh_tune.cli import main
from lsh_tune.errors import LSHUsageError

REPO = Path(__file__).resolve().parents[1]
PTB = REPO / "lsh_tune" / "data" / "ptb"
TOKENS = "2000"


def _ptb_lines(split: str, n: int) -> list[str]:
    with lzma.open(PTB / f"{split}.txt.xz", "rt", encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


def _corpus(root: Path, name: str, **splits) -> str:
    """A corpus directory: real PTB lines per split unless ``splits`` overrides one (bytes, None = absent,
    "dir" = a directory in its place)."""
    d = root / name
    d.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        content = splits.get(split, "".join(_ptb_lines(split, 300)).encode())
        if content is None:
            continue
        if content == "dir":
            (d / f"{split}.txt").mkdir()
        else:
            (d / f"{split}.txt").write_bytes(content)
    return str(d)


def _quiet_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors
        return int(e.code)


def _checkpoints(root: Path, small_corpus: str) -> dict[str, str]:
    """Real tiny checkpoints (epoch 0) of each kind, and damaged copies of one."""
    made = {}
    runs = {"dense": ["train-dense", "--model", "stacked_lstm"],
            "sparse": ["train-sparse", "--model", "stacked_lstm", "--sparsity", "0.5"],
            "rhn": ["train-dense", "--model", "rhn"],
            "vocab": ["train-dense", "--model", "stacked_lstm", "--corpus", small_corpus]}
    for kind, argv in runs.items():
        out = root / "made" / kind
        assert _quiet_main([*argv, "--epochs", "0", "--max-tokens", TOKENS, "--out", str(out), "--json"]) == 0
        made[kind] = str(out / "checkpoint.pt")
    good = Path(made["dense"]).read_bytes()
    damaged = {"truncated": good[: len(good) // 3], "corrupt": b"\x80\x04garbage" * 64, "empty": b""}
    for kind, data in damaged.items():
        (root / "made" / f"{kind}.pt").write_bytes(data)
        made[kind] = str(root / "made" / f"{kind}.pt")
    torch.save(torch.zeros(3), root / "made" / "tensor.pt")
    torch.save({"weights": torch.zeros(3)}, root / "made" / "nokeys.pt")
    made.update(tensor=str(root / "made" / "tensor.pt"), nokeys=str(root / "made" / "nokeys.pt"))
    return made


def _run_dir(root: Path, name: str, checkpoint: str) -> str:
    """A train-dense/train-sparse ``--out`` directory holding ``checkpoint`` as its checkpoint.pt."""
    d = root / "runs" / name
    d.mkdir(parents=True)
    shutil.copy(checkpoint, d / "checkpoint.pt")
    return str(d)


def _saved_searches(store: Path) -> None:
    """Experiment directories as a resume finds them: a good one, and damaged or foreign ones."""
    from lsh_tune.search._ledger import SearchLedger
    from lsh_tune.search.config import SearchConfig

    cfg = SearchConfig(hpo="random", metric="loss", pool=4, rounds_every=1, max_epochs=3, gpus_per_trial=0,
                       max_tokens=int(TOKENS), storage_path=str(store), name="saved")
    cfg.save()
    SearchLedger.create(cfg.pool_config(), cfg.hpo, cfg.space, cfg.experiment())
    SearchLedger.forget(cfg.experiment())
    good = store / "saved"
    for name, rel, content in [("corrupt_config", "lsh/search.json", '{"model": "stacked_l'),
                               ("foreign_config", "lsh/search.json", '{"epochs": 3, "optimizer": "adam"}'),
                               ("list_config", "lsh/search.json", "[1, 2, 3]"),
                               ("unknown_setting", "lsh/search.json", None),
                               ("corrupt_state", "lsh/state.json", '{"version": 1, "po'),
                               ("never_started", "lsh/state.json", "")]:
        shutil.copytree(good, store / name)
        if name == "never_started":
            os.remove(store / name / rel)
        elif name == "unknown_setting":
            d = json.loads((good / rel).read_text())
            (store / name / rel).write_text(json.dumps({**d, "learning_schedule": "cosine"}))
        else:
            (store / name / rel).write_text(content)
    (store / "not_an_experiment").mkdir()
    (store / "not_an_experiment" / "notes.txt").write_text("hello")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    w = {"store": str(root / "store"), "root": str(root)}
    (root / "store").mkdir()
    w["c_empty_valid"] = _corpus(root, "empty_valid", valid=b"")
    w["c_blank_test"] = _corpus(root, "blank_test", test=b"\n\n  \n")
    w["c_binary_train"] = _corpus(root, "binary_train", train=b"the cat\x00\x01\x02 sat\n" * 50)
    w["c_latin1_valid"] = _corpus(root, "latin1_valid", valid="café au lait\n".encode("latin-1"))
    w["c_missing_test"] = _corpus(root, "missing_test", test=None)
    w["c_split_is_dir"] = _corpus(root, "split_is_dir", test="dir")
    w["c_short_valid"] = _corpus(root, "short_valid", valid=b"a b c\n")
    d = Path(_corpus(root, "bad_xz", train=None))
    (d / "train.txt.xz").write_bytes(b"\xfd7zXZ\x00 not really xz")
    w["c_bad_xz"] = str(d)
    w["c_file"] = str(d / "valid.txt")
    w["c_small"] = _corpus(root, "small")
    w.update({f"k_{k}": v for k, v in _checkpoints(root, w["c_small"]).items()})
    for kind in ("sparse", "rhn", "vocab", "truncated", "corrupt", "empty", "tensor", "nokeys", "dense"):
        w[f"r_{kind}"] = _run_dir(root, f"dense_{kind}", w[f"k_{kind}"])
    w["r_dense_for_sparse"] = _run_dir(root, "sparse_dense", w["k_dense"])
    w["r_sparse_ok"] = _run_dir(root, "sparse_ok", w["k_sparse"])
    w["r_nothing"] = str(root / "runs" / "nothing")
    Path(w["r_nothing"]).mkdir()
    _saved_searches(root / "store")
    return w


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Fail the test if anything would start Ray (validation must come first)."""
    ray = pytest.importorskip("ray")

    def refuse(*args, **kwargs):
        raise AssertionError("ray.init was called: the input was not validated before Ray started")

    monkeypatch.setattr(ray, "init", refuse)


def _tree(root: str) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


S = ["search", "--storage-path", "{store}", "--gpus-per-trial", "0", "--max-tokens", TOKENS]
TD = ["train-dense", "--model", "stacked_lstm", "--max-tokens", TOKENS, "--epochs", "1"]
TS = ["train-sparse", "--model", "stacked_lstm", "--sparsity", "0.5", "--max-tokens", TOKENS, "--epochs", "1"]
RES = ["search", "--storage-path", "{store}", "--resume", "--name"]

#: (id, argv template, what the one-line error must contain)
CATALOGUE = [
    # unknown choices
    ("search-hpo", [*S, "--hpo", "smac"], "hpo='smac' is not allowed; choose one of"),
    ("search-model", [*S, "--model", "foo", "--metric", "loss"], "model='foo' is not allowed"),
    ("search-preset", [*S, "--preset", "huge"], "preset='huge' is not allowed"),
    ("search-metric", [*S, "--metric", "acc"], "metric='acc'"),
    ("search-ls-state", [*S, "--ls-state", "c"], "ls_state='c'"),
    ("search-ls-qr", [*S, "--ls-qr", "blocks"], "ls_qr='blocks'"),
    ("search-ls-distance", [*S, "--ls-distance", "l1"], "ls_distance='l1'"),
    ("search-ls-fit", [*S, "--ls-fit", "global"], "ls_fit='global'"),
    ("search-ls-preset", [*S, "--ls-preset", "optuna"], "ls_preset='optuna' is not allowed; choose one of: paper, authors"),
    ("search-ls-preset-conflict", [*S, "--ls-preset", "authors", "--ls-fit", "candidate"],
     "ls_preset='authors' sets ls_fit='authors', and ls_fit='candidate' was given"),
    ("sparse-death", [*TS, "--death", "random", "--out", "{root}/o"], "death='random'"),
    ("sparse-growth", [*TS, "--growth", "magnitude", "--out", "{root}/o"], "growth='magnitude'"),
    ("sparse-masked", [*TS, "--masked", "embedding,bias", "--out", "{root}/o"], "masked='bias'"),
    ("ls-qr", ["ls", "--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--qr", "x"], "qr='x'"),
    ("model-info-model", ["model-info", "--model", "gru"], "'gru'"),
    # options that do not apply to the chosen model (the registry says which have a cell state)
    ("search-ls-state-hc-rhn", [*S, "--model", "rhn", "--ls-state", "hc"],
     "ls_state='hc' does not apply to model='rhn': its state has no cell state c"),
    ("ls-state-hc-rhn", ["ls", "--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--state", "hc"],
     "state='hc' does not apply to model='rhn'"),
    ("ls-state-hc-rhn-checkpoint", ["ls", "--checkpoint", "{k_rhn}", "--state", "hc"],
     "state='hc' does not apply to model='rhn'"),
    # out-of-range numbers
    ("search-sparsity-0", [*S, "--sparsity", "0"], "sparsity=0.0 is out of range; allowed: (0.0, 1.0)"),
    ("search-sparsity-1", [*S, "--sparsity", "1"], "sparsity=1.0 is out of range"),
    ("search-sparsity-nan", [*S, "--sparsity", "nan"], "sparsity=nan is not a finite number"),
    ("search-sparsity-text", [*S, "--sparsity", "half"], "invalid float value: 'half'"),
    ("search-E-0", [*S, "--rounds-every", "0"], "rounds_every=0 is out of range; allowed: integers >= 1"),
    ("search-pool-1", [*S, "--pool", "1"], "pool=1 is out of range; allowed: integers >= 2"),
    ("search-final-k-eq-pool", [*S, "--pool", "8", "--final-k", "8"], "final_k=8 must be smaller than pool=8"),
    ("search-final-k-gt-pool", [*S, "--pool", "8", "--final-k", "9"], "final_k=9 must be smaller than pool=8"),
    ("search-final-k-0", [*S, "--final-k", "0"], "final_k=0 is out of range"),
    ("search-lr-negative", [*S, "--lr", "-1"], "lr=-1.0 is out of range; allowed: (0.0, inf)"),
    ("search-lr-zero", [*S, "--lr", "0"], "lr=0.0 is out of range"),
    ("search-lr-nan", [*S, "--lr", "nan"], "lr=nan is not a finite number"),
    ("search-lr-inf", [*S, "--lr", "inf"], "lr=inf is not a finite number"),
    ("search-max-tokens-0", [*S, "--max-tokens", "0"], "max_tokens=0 is out of range"),
    ("search-gpus-negative", [*S, "--gpus-per-trial", "-1"], "gpus_per_trial=-1.0 is out of range"),
    ("search-cpus-nan", [*S, "--cpus-per-trial", "nan"], "cpus_per_trial=nan is not a finite number"),
    ("search-no-resources", [*S, "--cpus-per-trial", "0"], "a trial needs some resource"),
    ("search-ls-k-0", [*S, "--ls-k", "0"], "ls_k=0 is out of range"),
    ("search-ls-warmup", [*S, "--ls-warmup", "-1"], "ls_warmup=-1 is out of range"),
    ("search-ls-top-big", [*S, "--ls-top", "1000"], "ls_top=1000 exceeds the state size N=128"),
    ("search-max-epochs-0", [*S, "--max-epochs", "0"], "max_epochs=0 is out of range"),
    ("search-max-epochs-short", [*S, "--pool", "8", "--rounds-every", "1", "--max-epochs", "3"], "max_epochs >= 4"),
    ("search-max-rounds-0", [*S, "--max-rounds", "0"], "max_rounds=0 is out of range"),
    ("search-epoch-budget-0", [*S, "--epoch-budget", "0"], "epoch_budget=0 is out of range"),
    ("search-reference-epochs-0", [*S, "--reference-epochs", "0"], "reference_epochs=0 is out of range"),
    ("search-seed", [*S, "--seed", "-1"], "seed=-1 is out of range"),
    ("search-verbose", [*S, "--verbose", "4"], "verbose=4 is out of range; allowed: 0, 1, 2, 3"),
    ("search-grid-death-rate", [*S, "--hpo", "grid", "--grid-death-rate", "1.5"], "grid_death_rate=1.5"),
    ("search-grid-pool", [*S, "--hpo", "grid", "--pool", "30"], "pool=30 exceeds the grid's 24 variants"),
    ("search-max-failures", [*S, "--max-failures", "-1"], "max_failures=-1 is out of range"),
    ("search-num-cpus", [*S, "--num-cpus", "0"], "argument --num-cpus: '0' is not allowed"),
    ("search-gpus-local", [*S, "--gpus-per-trial", "1", "--num-gpus", "0"], "gpus_per_trial=1.0 but --num-gpus"),
    ("search-remote-local-options", [*S, "--address", "auto", "--num-cpus", "2"], "only apply to a local Ray"),
    ("dense-lr-negative", [*TD, "--lr", "-1", "--out", "{root}/o"], "-1"),
    ("dense-lr-nan", [*TD, "--lr", "nan", "--out", "{root}/o"], "nan"),
    ("dense-epochs", [*TD, "--epochs", "-1", "--out", "{root}/o"], "'-1'"),
    ("dense-batch", [*TD, "--batch-size", "0", "--out", "{root}/o"], "'0'"),
    ("dense-max-tokens", [*TD, "--max-tokens", "0", "--out", "{root}/o"], "'0'"),
    ("dense-device", [*TD, "--device", "tpu", "--out", "{root}/o"], "device='tpu'"),
    ("sparse-sparsity", ["train-sparse", "--model", "rhn", "--sparsity", "1", "--out", "{root}/o"], "sparsity=1.0"),
    ("sparse-death-rate", [*TS, "--death-rate", "0", "--out", "{root}/o"], "death_rate=0.0"),
    ("sparse-prune-interval", [*TS, "--prune-interval", "0", "--out", "{root}/o"], "'0'"),
    ("ls-k", ["ls", "--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "-k", "0"], "k=0"),
    ("ls-top", ["ls", "--model", "rhn", "--preset", "tiny", "--corpus", "ptb", "--top", "65"], "top=65"),
    ("model-info-vocab", ["model-info", "--model", "rhn", "--vocab-size", "1"], "vocab_size=1"),
    # unreadable, empty, binary or wrongly-shaped corpora (each split)
    ("corpus-empty-valid", [*S, "--corpus", "{c_empty_valid}"], "valid.txt' holds no words"),
    ("corpus-blank-test", [*S, "--corpus", "{c_blank_test}"], "test.txt' holds no words"),
    ("corpus-binary-train", [*S, "--corpus", "{c_binary_train}"], "train.txt' is binary"),
    ("corpus-latin1-valid", [*S, "--corpus", "{c_latin1_valid}"], "valid.txt'"),
    ("corpus-missing-test", [*S, "--corpus", "{c_missing_test}"], "lacks train/valid/test"),
    ("corpus-split-is-dir", [*S, "--corpus", "{c_split_is_dir}"], "lacks train/valid/test"),
    ("corpus-unreadable-xz", [*S, "--corpus", "{c_bad_xz}"], "cannot read corpus file"),
    ("corpus-a-file", [*S, "--corpus", "{c_file}"], "neither a known corpus"),
    ("corpus-nowhere", [*S, "--corpus", "{root}/no/such/corpus"], "neither a known corpus"),
    ("corpus-short-valid", [*S, "--corpus", "{c_short_valid}", "--max-tokens", "100000"], "the valid split has 4 tokens"),
    ("corpus-too-few-tokens", [*S, "--max-tokens", "30"], "the valid split has 30 tokens"),
    ("dense-corpus-empty-valid", [*TD, "--corpus", "{c_empty_valid}", "--out", "{root}/o"], "holds no words"),
    ("sparse-corpus-binary", [*TS, "--corpus", "{c_binary_train}", "--out", "{root}/o"], "is binary"),
    ("data-info-bad-xz", ["data-info", "--corpus", "{c_bad_xz}"], "cannot read corpus file"),
    ("ls-corpus-blank", ["ls", "--model", "rhn", "--preset", "tiny", "--corpus", "{c_blank_test}"], "holds no words"),
    # corrupt, foreign or mismatched checkpoints
    ("resume-dense-with-sparse-ckpt", [*TD, "--out", "{r_sparse}", "--resume"], "it is a sparse checkpoint"),
    ("resume-sparse-with-dense-ckpt", [*TS, "--out", "{r_dense_for_sparse}", "--resume"], "it is a dense checkpoint"),
    ("resume-sparse-other-config", [*TS[:4], "0.6", *TS[5:], "--out", "{r_sparse_ok}", "--resume"], "--sparsity 0.6"),
    ("resume-other-model", [*TD, "--out", "{r_rhn}", "--resume"], "its model differs"),
    ("resume-other-vocab", [*TD, "--out", "{r_vocab}", "--resume"], "has 10000 words, the checkpoint's model"),
    ("resume-other-lr", [*TD, "--lr", "3", "--out", "{r_dense}", "--resume"], "--lr 3.0 (checkpoint: 40.0)"),
    ("resume-other-slice", [*TD[:4], "3000", *TD[5:], "--out", "{r_dense}", "--resume"], "--max-tokens 3000"),
    ("resume-truncated", [*TD, "--out", "{r_truncated}", "--resume"], "cannot read checkpoint"),
    ("resume-corrupt", [*TD, "--out", "{r_corrupt}", "--resume"], "cannot read checkpoint"),
    ("resume-no-checkpoint", [*TD, "--out", "{r_nothing}", "--resume"], "does not exist"),
    ("resume-zero-bytes", [*TD, "--out", "{r_empty}", "--resume"], "cannot read checkpoint"),
    ("resume-foreign-tensor", [*TD, "--out", "{r_tensor}", "--resume"], "holds a Tensor, not an lsh_tune checkpoint"),
    ("resume-foreign-dict", [*TD, "--out", "{r_nokeys}", "--resume"], "lacks keys"),
    ("start-over-existing", [*TD, "--out", "{r_dense}"], "already exists; pass --resume"),
    ("out-is-a-file", [*TD, "--out", "{k_dense}"], "exists and is not a directory"),
    ("ls-truncated", ["ls", "--checkpoint", "{k_truncated}"], "cannot read checkpoint"),
    ("ls-zero-bytes", ["ls", "--checkpoint", "{k_empty}"], "cannot read checkpoint"),
    ("ls-foreign", ["ls", "--checkpoint", "{k_nokeys}"], "lacks keys"),
    ("ls-other-vocab", ["ls", "--checkpoint", "{k_vocab}", "--corpus", "ptb"], "the model expects"),
    ("reference-sparse", [*S, "--reference-checkpoint", "{k_sparse}"], "is a sparse checkpoint"),
    ("reference-other-model", [*S, "--reference-checkpoint", "{k_rhn}"], "another architecture"),
    ("reference-other-vocab", [*S, "--reference-checkpoint", "{k_vocab}"], "trained on"),
    ("reference-corrupt", [*S, "--reference-checkpoint", "{k_corrupt}"], "cannot read checkpoint"),
    ("reference-missing", [*S, "--reference-checkpoint", "{root}/none.pt"], "does not exist"),
    # --resume on what is not a resumable lsh_tune search, or with contradicting options
    ("resume-nothing", [*RES, "nothing"], "nothing to resume"),
    ("resume-not-an-experiment", [*RES, "not_an_experiment"], "is not an lsh_tune experiment"),
    ("resume-never-started", [*RES, "never_started"], "never started"),
    ("resume-corrupt-config", [*RES, "corrupt_config"], "search.json (corrupt or truncated"),
    ("resume-foreign-config", [*RES, "foreign_config"], "is not an lsh_tune search config"),
    ("resume-list-config", [*RES, "list_config"], "is not an lsh_tune search config"),
    ("resume-unknown-setting", [*RES, "unknown_setting"], "learning_schedule"),
    ("resume-corrupt-state", [*RES, "corrupt_state"], "state.json"),
    ("resume-contradicting", [*RES, "saved", "--pool", "8", "--hpo", "tpe"],
     "--hpo 'tpe' (saved: 'random'), --pool 8 (saved: 4)"),
    ("resume-contradicting-lr", [*RES, "saved", "--lr", "1"], "--lr 1.0 (saved: None)"),
    ("new-over-existing", [*S, "--name", "saved"], "already holds a search"),
    # names that escape the storage path, storage that cannot hold an experiment
    ("name-dotdot", [*S, "--name", ".."], "name='..' must be a single directory name"),
    ("name-slash", [*S, "--name", "../elsewhere"], "must be a single directory name"),
    ("name-empty", [*S, "--name", ""], "must be a single directory name"),
    ("name-reserved", [*S, "--name", "reference_cache"], "the storage path's own directory"),
    ("storage-empty", [*S[:2], "", *S[3:]], "storage_path=''"),
    ("storage-is-a-file", [*S[:2], "{k_dense}", *S[3:]], "is a file, not a directory"),
    # replay and table build: options generated from ReplaySettings / TableSettings, checked by them
    ("replay-hpo", ["replay", "{root}/no_table", "--hpo", "smac"], "hpo='smac' is not allowed; choose one of"),
    ("replay-ls-fit", ["replay", str(REPO / "tables" / "tiny"), "--ls-fit", "global"], "ls_fit='global'"),
    ("replay-ls-preset-conflict", ["replay", str(REPO / "tables" / "tiny"), "--ls-preset", "paper", "--ls-embedding",
                                   "tsne"], "ls_preset='paper' sets ls_embedding='pca', and ls_embedding='tsne' was given"),
    ("replay-seed", ["replay", str(REPO / "tables" / "tiny"), "--seed", "-1"], "seed=-1"),
    ("table-build-ls-states", ["table", "build", "{root}/new_table", "--preset", "tiny", "--ls-states", "h,x"],
     "ls_states='x' is not allowed"),
    ("table-build-corpus", ["table", "build", "{root}/new_table", "--preset", "tiny", "--corpus", "{root}/none"],
     "is neither a known corpus"),
    ("table-build-without-preset", ["table", "build", "{root}/new_table", "--epochs", "2"],
     "--epochs sets a new table's settings: pass --preset too"),
]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CATALOGUE], ids=[c[0] for c in CATALOGUE])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, argv, needle, capsys):
    argv = [a.format(**world) for a in argv]
    before = _tree(world["root"])
    rc = _quiet_main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("lsh-tune: error: "), err
    assert needle in lines[0] and "Traceback" not in err and out == ""
    assert _tree(world["root"]) == before, "bad input changed files"


def test_resume_applies_the_options_that_may_change_and_says_which(world, capsys, monkeypatch):
    import lsh_tune.cli.search as cli_search

    seen = {}

    def stop(args, address, *rest):  # where Ray would start: the config is final by then
        seen["address"] = address
        raise LSHUsageError("stopped before Ray")

    monkeypatch.setattr(cli_search, "_init_ray", stop)
    store = world["store"]
    assert _quiet_main([*RES[:2], store, "--resume", "--name", "saved", "--verbose", "0", "--pool", "4",
                        "--address", "local"]) == 2
    err = capsys.readouterr().err
    assert "from this command: --address, --verbose" in err and seen == {"address": "local"}


@pytest.mark.parametrize("script", ["ptb_stacked_lstm.py", "ptb_rhn.py", "wt2_awd_lstm_mos.py"])
def test_experiment_scripts_refuse_bad_input_the_same_way(world, script, capsys, monkeypatch):
    argv = ["--storage-path", world["store"], "--pool", "1", "--gpus-per-trial", "0"]
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(REPO / "experiments" / script), run_name="__main__")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("lsh-tune: error: pool=1 is out of range") and err.count("\n") == 1


def test_python_api_refuses_bad_input_before_ray(world):
    import lsh_tune

    with pytest.raises(LSHUsageError, match="final_k=2 must be smaller than pool=2"):
        lsh_tune.LSHTuner(pool=2, storage_path=world["store"])
    with pytest.raises(LSHUsageError, match="lr=-1"):
        lsh_tune.SearchConfig(lr=-1)
    tuner = lsh_tune.LSHTuner(corpus=world["c_empty_valid"], gpus_per_trial=0, storage_path=world["store"], name="api")
    with pytest.raises(LSHUsageError, match="holds no words"):
        tuner.fit()  # no_ray: fails the test if Ray were started first
    assert not (Path(world["store"]) / "api").exists()


def test_the_real_exit_path_of_a_corrupt_checkpoint(world):
    """The first example of the issue, as a user runs it: a subprocess, its exit code and stderr."""
    r = subprocess.run([sys.executable, "-m", "lsh_tune", *TD, "--out", world["r_corrupt"], "--resume"],
                       capture_output=True, text=True, timeout=300, cwd=str(REPO),
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("lsh-tune: error: cannot read checkpoint") and r.stderr.count("\n") == 1, r.stderr


def test_a_closed_output_pipe_is_exit_141_without_a_traceback():
    """`lsh-tune … | head` where the reader has gone: the shell's SIGPIPE status, nothing on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        r = subprocess.run([sys.executable, "-m", "lsh_tune", "table", "analyze", str(REPO / "tables" / "tiny"),
                            "--boot", "2"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
                           cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    finally:
        os.close(write)
    assert r.returncode == 141 and r.stderr == "", r.stderr
