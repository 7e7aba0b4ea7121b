#!/usr/bin/env bash
# A short real search on a lent GPU machine and where its slot time went (issue 19 items 4 and 5).
# Never a test dependency. From the repository root, on the device after the bundle's prelude:
#   source .device-bundle/prelude.sh && bash benchmarks/gpu_search.sh
# Runs experiments/ptb_stacked_lstm.py (LSH-TPE through Ray, --gpus-per-trial auto) on 100k-token PTB
# slices, pool 8, E = 1, 2 finalists, 4 epochs, then prints one JSON line: the search's wall time, its
# settings and `lsh-tune report`'s time split (training, LS, reference, starts/restores, saves, round
# waits, other; seconds and shares of wall x slots). The target is >= 85 % training + LS.
# Environment: PRESET (default paper; tiny for a CPU dry run), MAX_TOKENS (default 100000), GPUS_PER_TRIAL (default auto),
# SEARCH_TIMEOUT (default 330 s), OUT (default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-/tmp}/lsh_gpu_search"
rm -rf "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s%N)
timeout "${SEARCH_TIMEOUT:-330}" "$PY" experiments/ptb_stacked_lstm.py --preset "${PRESET:-paper}" \
    --max-tokens "${MAX_TOKENS:-100000}" --pool 8 --rounds-every 1 --final-k 2 --max-epochs 4 \
    --gpus-per-trial "${GPUS_PER_TRIAL:-auto}" --storage-path "$OUT_DIR" --name split --verbose 0
end=$(date +%s%N)
"$PY" -m lsh_tune report --json "$OUT_DIR/split" | "$PY" -c '
import json, sys
r = json.load(sys.stdin)
t = r["time"]
slot = t.get("wall_s", 0) * t.get("slots", 1) or 1.0
print(json.dumps({"step": "gpu_search", "search_wall_s": (int(sys.argv[2]) - int(sys.argv[1])) / 1e9, "status": r["status"],
                  "settings": r["settings"], "time": t,
                  "training_plus_ls_share": (t.get("training_s", 0) + t.get("ls_s", 0)) / slot,
                  "chosen_test_ppl": (r.get("chosen") or {}).get("test_ppl")}))
' "$start" "$end"
