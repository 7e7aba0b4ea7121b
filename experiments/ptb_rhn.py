"""Paper result: RHN (23.5M, depth 10) on PTB at sparsity 0.53 by LSH-TPE (Table 1: LSH 59.0 test perplexity,
Selfish-RNN 60.4, dense NT-ASGD 61.8).

    python experiments/ptb_rhn.py --storage-path /mnt/shared/lsh --address auto   # a GPU cluster
    python experiments/ptb_rhn.py --preset small --storage-path runs               # a laptop, hours
    python experiments/ptb_rhn.py --preset tiny --storage-path runs                # a minute

``--preset tiny|small|paper`` (default paper) and every ``lsh-tune search`` option; later options
override these (experiments/_common.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import main  # noqa: E402

SCRIPT = ["--model", "rhn", "--corpus", "ptb", "--sparsity", "0.53", "--hpo", "tpe", "--metric", "ls",
          "--name", "ptb_rhn"]

if __name__ == "__main__":
    raise SystemExit(main(SCRIPT))
