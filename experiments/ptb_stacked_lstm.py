"""Paper setting: stacked LSTM (66.0M) on PTB at sparsity 0.67, LSH-TPE, E = 3, pool 24.

    python experiments/ptb_stacked_lstm.py --storage-path /mnt/shared/lsh            # local Ray
    python experiments/ptb_stacked_lstm.py --address auto --storage-path /mnt/shared/lsh  # cluster
    python experiments/ptb_stacked_lstm.py --hpo atpe --pool 40 --name lsh-atpe-high  # any override

Every ``lsh-tune search`` option can be appended; later options override these defaults.
"""
import sys

from lsh_tune.cli.search import main

PAPER = ["--model", "stacked_lstm", "--preset", "paper", "--corpus", "ptb", "--sparsity", "0.67",
         "--hpo", "tpe", "--metric", "ls", "--pool", "24", "--rounds-every", "3", "--final-k", "2",
         "--gpus-per-trial", "1", "--cpus-per-trial", "2", "--name", "ptb_stacked_lstm"]

if __name__ == "__main__":
    raise SystemExit(main(PAPER + sys.argv[1:]))
