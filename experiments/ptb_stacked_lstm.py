"""Paper result: stacked LSTM (66.0M) on PTB at sparsity 0.67 by LSH-TPE (Table 1: LSH 69.9 test perplexity,
Selfish-RNN 71.7, dense NT-ASGD 72.4).

    ray job submit --working-dir . -- python experiments/ptb_stacked_lstm.py --storage-path s3://BUCKET/lsh
    python experiments/ptb_stacked_lstm.py --preset small --storage-path runs    # this machine, CPU: hours
    python experiments/ptb_stacked_lstm.py --preset tiny --storage-path runs     # a minute
    python experiments/ptb_stacked_lstm.py --hpo atpe --pool 40 --name lsh-atpe-high   # any override
    python experiments/ptb_stacked_lstm.py --preset tiny --storage-path runs --resume   # continue

--preset tiny|small|paper (default paper) and every `lsh-tune search` option, which override the
script's settings (lsh_tune/cli/experiment.py). The script needs only the installed lsh_tune package.
"""
from lsh_tune.cli.experiment import main

SCRIPT = ["--model", "stacked_lstm", "--corpus", "ptb", "--sparsity", "0.67", "--hpo", "tpe", "--metric", "hybrid",
          "--name", "ptb_stacked_lstm"]

if __name__ == "__main__":
    raise SystemExit(main(SCRIPT, doc=__doc__))
