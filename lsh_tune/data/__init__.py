"""Corpora and BPTT batching."""
from lsh_tune.data.batching import batchify, bptt_batches, get_batch
from lsh_tune.data.corpus import (KNOWN_CORPORA, Corpus, Vocabulary, check_corpus_size, find_corpus_dir, load_corpus,
                                  search_dirs)
from lsh_tune.data.unigram import unigram_perplexities, unigram_perplexity

__all__ = ["KNOWN_CORPORA", "Corpus", "Vocabulary", "batchify", "bptt_batches", "check_corpus_size",
           "find_corpus_dir", "get_batch", "load_corpus", "search_dirs", "unigram_perplexities",
           "unigram_perplexity"]
