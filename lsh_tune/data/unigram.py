"""The add-one unigram baseline: the perplexity a model reaches by knowing word frequencies only.

A language model whose perplexity is near this number has learnt nothing beyond how often each
word occurs (≈ 685 on the whole PTB test set with PTB's 10k vocabulary; ≈ 1000 on the first 10k
tokens of each split). The search prints it beside the dense reference and the chosen candidate.
"""
from __future__ import annotations

import math

from lsh_tune.errors import LSHUsageError, check_range

__all__ = ["unigram_perplexity", "unigram_perplexities"]

_SPLITS = ("valid", "test")


def unigram_perplexity(corpus, split: str = "test", *, smoothing: float = 1.0) -> float:
    """Perplexity (per token, natural log) on ``corpus``'s ``split`` of the unigram model of its training tokens.

    p(w) = (count_train(w) + smoothing) / (N_train + smoothing · V), V = ``len(corpus.vocab)``: every
    word of the vocabulary (which spans all three splits) has a non-zero probability.

    Args:
        corpus: a :class:`~lsh_tune.data.Corpus` (its ``train`` estimates, ``split`` is evaluated; with
            ``max_tokens`` both are the slices the search uses).
        split: ``valid`` or ``test``.
        smoothing: the additive count (1 = add-one / Laplace).

    Raises:
        LSHUsageError: an unknown split, a split without tokens, or ``smoothing <= 0``.
    """
    import torch

    if split not in _SPLITS:
        raise LSHUsageError(f"split={split!r} is not allowed; choose one of: {', '.join(_SPLITS)}")
    check_range("smoothing", smoothing, 0.0, None, low_open=True)
    tokens = corpus.split(split)
    if tokens.numel() == 0:
        raise LSHUsageError(f"split {split!r} of corpus {corpus.name!r} has no tokens")
    counts = torch.bincount(corpus.train, minlength=len(corpus.vocab)).double() + float(smoothing)
    log_p = torch.log(counts / counts.sum())
    return math.exp(-float(log_p[tokens].mean()))


def unigram_perplexities(corpus) -> dict[str, float]:
    """``{"valid": …, "test": …}``: :func:`unigram_perplexity` of both evaluation splits."""
    return {split: unigram_perplexity(corpus, split) for split in _SPLITS}
