"""The add-one unigram baseline (lsh_tune.data.unigram)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lsh_tune.data import Corpus, Vocabulary, unigram_perplexities, unigram_perplexity
from lsh_tune.errors import LSHUsageError


def _corpus(train, valid, test, vocab_size=3) -> Corpus:
    vocab = Vocabulary()
    for i in range(vocab_size):
        vocab.add(f"w{i}")
    t = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return Corpus("toy", Path("."), vocab, t(train), t(valid), t(test))


def test_add_one_by_hand():
    c = _corpus([0, 0, 1], [1], [0, 2])
    # counts + 1 = (3, 2, 1) over 6: p(0) = 1/2, p(2) = 1/6 -> exp(-(ln 1/2 + ln 1/6) / 2) = sqrt(12)
    assert unigram_perplexity(c, "test") == pytest.approx(math.sqrt(12.0))
    assert unigram_perplexity(c, "valid") == pytest.approx(3.0)
    assert unigram_perplexity(c, "test", smoothing=0.5) == pytest.approx(
        math.exp(-(math.log(2.5 / 4.5) + math.log(0.5 / 4.5)) / 2))
    assert unigram_perplexities(c) == {"valid": pytest.approx(3.0), "test": pytest.approx(math.sqrt(12.0))}


def test_ptb_slice(ptb_slice):
    from lsh_tune.data import load_corpus

    # the slices the demo talks about: ≈ 1000 on the first 10k tokens of each split
    assert 950 < unigram_perplexity(load_corpus("ptb", max_tokens=10000), "test") < 1050
    assert unigram_perplexity(ptb_slice, "test") > 500


@pytest.mark.parametrize("kw, match", [({"split": "train"}, "split='train'"), ({"smoothing": 0.0}, "smoothing=0.0")])
def test_bad_input(kw, match):
    with pytest.raises(LSHUsageError, match=match):
        unigram_perplexity(_corpus([0], [0], [0]), **kw)
