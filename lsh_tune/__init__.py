"""lsh_tune: LS-based hyperpruning (LSH) of recurrent language models on Ray Tune."""
__version__ = "0.1.0"
