"""Paper setting: RHN (23.5M, depth 10) on PTB at sparsity 0.53, LSH-TPE, E = 3, pool 24.

    python experiments/ptb_rhn.py --storage-path /mnt/shared/lsh [--address auto] [overrides]

Every ``lsh-tune search`` option can be appended; later options override these defaults.
"""
import sys

from lsh_tune.cli.search import main

PAPER = ["--model", "rhn", "--preset", "paper", "--corpus", "ptb", "--sparsity", "0.53",
         "--hpo", "tpe", "--metric", "ls", "--pool", "24", "--rounds-every", "3", "--final-k", "2",
         "--gpus-per-trial", "1", "--cpus-per-trial", "2", "--name", "ptb_rhn"]

if __name__ == "__main__":
    raise SystemExit(main(PAPER + sys.argv[1:]))
