"""Paper result: AWD-LSTM-MoS (35.0M) on WikiText-2 at sparsity 0.55 by LSH-TPE (Table 1: LSH 62.2 test
perplexity, Selfish-RNN 63.0, dense NT-ASGD 63.3).

WikiText-2 is vendored (lsh_tune/data/wikitext-2/); --data-dir DIR or LSH_TUNE_DATA use another copy.

    ray job submit --working-dir . -- python experiments/wt2_awd_lstm_mos.py --storage-path s3://BUCKET/lsh
    python experiments/wt2_awd_lstm_mos.py --preset small --storage-path runs    # this machine, CPU: days
    python experiments/wt2_awd_lstm_mos.py --preset tiny --storage-path runs     # minutes
    python experiments/wt2_awd_lstm_mos.py --preset tiny --storage-path runs --resume   # continue

--preset tiny|small|paper (default paper) and every `lsh-tune search` option, which override the
script's settings (lsh_tune/cli/experiment.py). The script needs only the installed lsh_tune package.
"""
from lsh_tune.cli.experiment import main

SCRIPT = ["--model", "awd_lstm_mos", "--corpus", "wikitext-2", "--sparsity", "0.55", "--hpo", "tpe",
          "--metric", "hybrid", "--name", "wt2_awd_lstm_mos"]

if __name__ == "__main__":
    raise SystemExit(main(SCRIPT, doc=__doc__))
