"""Paper result: AWD-LSTM-MoS (35.0M) on WikiText-2 at sparsity 0.55 by LSH-TPE (Table 1: LSH 62.2 test
perplexity, Selfish-RNN 63.0, dense NT-ASGD 63.3).

WikiText-2 is vendored (lsh_tune/data/wikitext-2/); ``--data-dir DIR`` or ``LSH_TUNE_DATA`` use another copy.

    python experiments/wt2_awd_lstm_mos.py --storage-path /mnt/shared/lsh --address auto   # a GPU cluster
    python experiments/wt2_awd_lstm_mos.py --preset small --storage-path runs               # a laptop, days
    python experiments/wt2_awd_lstm_mos.py --preset tiny --storage-path runs                # minutes

``--preset tiny|small|paper`` (default paper) and every ``lsh-tune search`` option; later options
override these (experiments/_common.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import main  # noqa: E402

SCRIPT = ["--model", "awd_lstm_mos", "--corpus", "wikitext-2", "--sparsity", "0.55", "--hpo", "tpe",
          "--metric", "ls", "--name", "wt2_awd_lstm_mos"]

if __name__ == "__main__":
    raise SystemExit(main(SCRIPT))
