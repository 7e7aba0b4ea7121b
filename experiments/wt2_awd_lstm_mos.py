"""Paper setting: AWD-LSTM-MoS (35.0M) on WikiText-2 at sparsity 0.55, LSH-TPE, E = 3, pool 24.

WikiText-2 is not vendored: put ``wikitext-2/{train,valid,test}.txt`` under a directory and pass
``--data-dir DIR`` (or set ``LSH_TUNE_DATA``).

    python experiments/wt2_awd_lstm_mos.py --data-dir /data --storage-path /mnt/shared/lsh [--address auto]

Every ``lsh-tune search`` option can be appended; later options override these defaults.
"""
import sys

from lsh_tune.cli.search import main

PAPER = ["--model", "awd_lstm_mos", "--preset", "paper", "--corpus", "wikitext-2", "--sparsity", "0.55",
         "--hpo", "tpe", "--metric", "ls", "--pool", "24", "--rounds-every", "3", "--final-k", "2",
         "--gpus-per-trial", "1", "--cpus-per-trial", "2", "--name", "wt2_awd_lstm_mos"]

if __name__ == "__main__":
    raise SystemExit(main(PAPER + sys.argv[1:]))
