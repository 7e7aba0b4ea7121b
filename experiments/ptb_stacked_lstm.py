"""Paper result: stacked LSTM (66.0M) on PTB at sparsity 0.67 by LSH-TPE (Table 1: LSH 69.9 test perplexity,
Selfish-RNN 71.7, dense NT-ASGD 72.4).

    python experiments/ptb_stacked_lstm.py --storage-path /mnt/shared/lsh --address auto   # a GPU cluster
    python experiments/ptb_stacked_lstm.py --preset small --storage-path runs               # a laptop, hours
    python experiments/ptb_stacked_lstm.py --preset tiny --storage-path runs                # a minute
    python experiments/ptb_stacked_lstm.py --hpo atpe --pool 40 --name lsh-atpe-high        # any override

``--preset tiny|small|paper`` (default paper) and every ``lsh-tune search`` option; later options
override these (experiments/_common.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import main  # noqa: E402

SCRIPT = ["--model", "stacked_lstm", "--corpus", "ptb", "--sparsity", "0.67", "--hpo", "tpe", "--metric", "ls",
          "--name", "ptb_stacked_lstm"]

if __name__ == "__main__":
    raise SystemExit(main(SCRIPT))
