"""Corpora: exact counts on the real files, vendored PTB, user corpora, batching."""
from __future__ import annotations

import hashlib
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import SHARED_DATA
from lsh_tune.data import batchify, bptt_batches, find_corpus_dir, load_corpus
from lsh_tune.errors import LSHUsageError

VENDORED = Path(__file__).resolve().parents[1] / "lsh_tune" / "data" / "ptb"
PTB_SHA = {"train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
           "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
           "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"}


def test_ptb_counts(ptb_full):
    info = ptb_full.info()
    assert info["tokens"] == {"train": 929_589, "valid": 73_760, "test": 82_430}
    assert info["vocab_size"] == 10_000


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_vendored_ptb_is_the_original(split):
    with lzma.open(VENDORED / f"{split}.txt.xz", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == PTB_SHA[split]


def test_vendored_ptb_found_without_shared(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LSH_TUNE_DATA", raising=False)
    import lsh_tune.data.corpus as corpus_mod
    monkeypatch.setattr(corpus_mod, "search_dirs", lambda data_dir=None: [tmp_path, VENDORED.parent])
    assert find_corpus_dir("ptb") == VENDORED.parent / "ptb"


@pytest.mark.skipif(not (SHARED_DATA / "wikitext-2").is_dir(), reason="WikiText-2 lives in ../shared/data")
def test_wikitext2_counts():
    info = load_corpus("wikitext-2", SHARED_DATA).info()
    assert info["tokens"] == {"train": 2_088_628, "valid": 217_646, "test": 245_569}
    assert info["vocab_size"] == 33_278


def test_user_corpus_directory_plain_text(tmp_path):
    # A user corpus: the first lines of real PTB, as plain .txt files.
    for split in ("train", "valid", "test"):
        with lzma.open(VENDORED / f"{split}.txt.xz", "rt", encoding="utf-8") as f:
            lines = [next(f) for _ in range(50)]
        (tmp_path / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    c = load_corpus(str(tmp_path))
    n_train = sum(len(l.split()) + 1 for l in (tmp_path / "train.txt").read_text().splitlines())
    assert c.train.numel() == n_train
    assert c.vocab.idx2word[c.train[0]] == (tmp_path / "train.txt").read_text().split()[0]


def test_env_var_data_dir(tmp_path, monkeypatch):
    shutil.copytree(VENDORED, tmp_path / "ptb")
    monkeypatch.setenv("LSH_TUNE_DATA", str(tmp_path))
    assert find_corpus_dir("ptb") == tmp_path / "ptb"


def test_missing_corpus_lists_every_place(tmp_path, monkeypatch):
    import lsh_tune.data.corpus as corpus_mod
    monkeypatch.setattr(corpus_mod, "_default_dirs", lambda: [tmp_path / "default"])
    monkeypatch.setattr(corpus_mod, "_VENDORED", tmp_path / "vendored")  # WikiText-2 is vendored too now
    monkeypatch.setenv("LSH_TUNE_DATA", str(tmp_path / "envdir"))
    with pytest.raises(LSHUsageError) as e:
        find_corpus_dir("wikitext-2", data_dir=tmp_path / "mine")
    msg = str(e.value)
    for d in ("mine", "envdir", "default"):
        assert str(tmp_path / d / "wikitext-2") in msg
    assert "--data-dir" in msg and "LSH_TUNE_DATA" in msg


def test_incomplete_user_corpus(tmp_path):
    (tmp_path / "train.txt").write_text("a b\n")
    with pytest.raises(LSHUsageError, match="lacks train/valid/test"):
        load_corpus(str(tmp_path))


def test_unreadable_corpus_file(tmp_path):
    for s in ("train", "valid", "test"):
        (tmp_path / f"{s}.txt.xz").write_bytes(b"not xz data")
    with pytest.raises(LSHUsageError, match="cannot read corpus file"):
        load_corpus(str(tmp_path))


def test_batchify_and_bptt(ptb_slice):
    data = batchify(ptb_slice.train, 20)
    assert data.shape == (20_000 // 20, 20)
    assert torch.equal(data[:, 1], ptb_slice.train[1000:2000])  # column j is the j-th contiguous chunk
    windows = list(bptt_batches(data, 35))
    assert sum(n for _, _, n in windows) == data.size(0) - 1
    x, y, _ = windows[0]
    assert torch.equal(x[1:], y[:-1])


def test_variable_bptt_is_seeded(ptb_slice):
    data = batchify(ptb_slice.train, 10)
    lens = lambda s: [n for _, _, n in bptt_batches(data, 35, variable=True, rng=np.random.default_rng(s))]
    a, b, c = lens(1), lens(1), lens(2)
    assert a == b and a != c and min(a) >= 5 and len(set(a)) > 3
