"""The demo search (``make demo``): a real LSH search that means something, in ≤ 5 minutes on 2 CPU cores.

    python experiments/demo.py --storage-path runs --name demo [overrides]

Tiny stacked LSTM (emb = hidden = 64, two layers) on the first 80,000 tokens of each PTB split,
sparsity 0.67, LSH-TPE ranked by the default hybrid (LS-distance rank and loss rank), pool 5, E = 1
(plan 5 → 4 → 2 finalists), finalists trained to 5 epochs, one CPU per trial, a local Ray with 2 CPUs. On this slice the add-one unigram
perplexity is 729 (valid) / 694 (test); the dense reference and the chosen candidate end well
below it (``tests/test_demo.py`` runs exactly these settings and checks < 0.7 × unigram).
Every ``lsh-tune search`` option can be appended; later options override these.
"""
import sys

from lsh_tune.cli.search import main

DEMO = ["--model", "stacked_lstm", "--preset", "tiny", "--corpus", "ptb", "--max-tokens", "80000",
        "--sparsity", "0.67", "--hpo", "tpe", "--metric", "hybrid", "--pool", "5", "--rounds-every", "1",
        "--final-k", "2", "--max-epochs", "5", "--seed", "0", "--gpus-per-trial", "0", "--cpus-per-trial", "1",
        "--address", "local", "--num-cpus", "2", "--name", "demo"]

if __name__ == "__main__":
    raise SystemExit(main(DEMO + sys.argv[1:]))
