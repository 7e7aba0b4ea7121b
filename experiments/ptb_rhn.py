"""Paper result: RHN (23.5M, depth 10) on PTB at sparsity 0.53 by LSH-TPE (Table 1: LSH 59.0 test perplexity,
Selfish-RNN 60.4, dense NT-ASGD 61.8).

    ray job submit --working-dir . -- python experiments/ptb_rhn.py --storage-path s3://BUCKET/lsh  # a GPU cluster
    python experiments/ptb_rhn.py --preset small --storage-path runs    # this machine, CPU: days (docs/cluster.md)
    python experiments/ptb_rhn.py --preset tiny --storage-path runs     # end to end in a minute or two
    python experiments/ptb_rhn.py --preset tiny --storage-path runs --resume   # continue an interrupted one

--preset tiny|small|paper (default paper) and every `lsh-tune search` option, which override the
script's settings (lsh_tune/cli/experiment.py). The script needs only the installed lsh_tune package.
"""
from lsh_tune.cli.experiment import main

SCRIPT = ["--model", "rhn", "--corpus", "ptb", "--sparsity", "0.53", "--hpo", "tpe", "--metric", "hybrid",
          "--name", "ptb_rhn"]

if __name__ == "__main__":
    raise SystemExit(main(SCRIPT, doc=__doc__))
