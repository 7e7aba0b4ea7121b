#!/usr/bin/env bash
# The GPU benchmark for a lent GPU machine (issue 19 item 5; never a test dependency). One prepared run
# of at most BUDGET_S seconds (default 470, under 8 minutes): the steps run in order of importance, each
# under its own limit and the time left, and a step that would start with under 20 s left is skipped
# with a JSON line saying so. From the repository root, on the device after the bundle's prelude:
#   source .device-bundle/prelude.sh && bash benchmarks/gpu_check.sh
# Steps (JSON lines from each script; a step killed at its limit prints {"step": ..., "exit": 124}):
#   rhn_step         the paper RHN's training step eager vs recorded in a CUDA graph, the graph with
#                    the highway cell through torch.compile inside it (the CUDA default; its first
#                    epoch, compile included, is each row's warmup_epoch_s), and the cell's plain
#                    autograd backward (target: <= 20 ms per batch);
#   stacked_lstm     the paper stacked LSTM: s per batch of a sparse candidate and the dense reference
#                    scaled to a PTB epoch, the full LS (layered QR) and its share of an epoch, CUDA vs
#                    CPU float64 LS (<= 1e-6);
#   ls_fast          qr='cholesky' vs qr='layered' at the paper's 2 x 1500 (N = 3000), h and hc
#                    (target: h <= 0.18 s, 1 % of an epoch);
#   graph_tests      tests/test_graph_step.py (the CUDA graph's curve vs the eager one);
#   search_split     a short real search through Ray (benchmarks/gpu_search.sh: paper stacked LSTM,
#                    100k-token slices, --gpus-per-trial auto) and its report's time split;
#   packing_lstm     training throughput of 1/2/4/8 trial processes sharing the GPU (stacked LSTM);
#   stacked_step     the paper stacked LSTM's step eager vs CUDA graph;
#   rhn, awd_lstm_mos  per-batch time and LS share of the other two paper models;
#   packing_rhn      throughput of 1 and 4 RHN trials sharing the GPU.
# Environment: BUDGET_S (default 470), DEVICE (cuda; cpu with PRESET=tiny for a dry run of the whole
# script on a machine without a GPU, numbers meaningless), PYTHON (default python3), OUT (the device
# tool's folder of files that come back: when set, everything printed is also written to
# $OUT/gpu_check.log, since a run's reply keeps only the last 12,000 characters; the search's
# experiment, checkpoints included, stays in WORK, default /tmp/lsh_gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
PRESET="${PRESET:-paper}"
BUDGET_S="${BUDGET_S:-470}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK="${WORK:-/tmp/lsh_gpu_check}"
deadline=$(( $(date +%s) + BUDGET_S ))
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu_check.log") 2>&1
fi
if [ "$DEVICE" = cuda ]; then
    "$PY" -c "import torch, sklearn, scipy; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    SIZE=(--preset paper)
    LS_SIZE=(--width 1500 --repeat 2)
    SEARCH_ENV=()
    GRAPH=graph,graph_compiled,  # the CUDA graph, and with the RHN cell compiled inside it (the default on CUDA)
else
    SIZE=(--preset "$PRESET")
    LS_SIZE=(--quick --repeat 1)
    SEARCH_ENV=(PRESET="$PRESET" MAX_TOKENS=6000 GPUS_PER_TRIAL=0)
    GRAPH=  # a CUDA graph needs CUDA: the dry run times the eager variants only
fi

# step NAME LIMIT_S COMMAND...: COMMAND under min(LIMIT_S, time left), or a "skipped" line.
step() {
    local name=$1 limit=$2 left rc
    shift 2
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -lt 20 ]; then
        echo "{\"step\": \"$name\", \"skipped\": \"budget of ${BUDGET_S} s spent\"}"
        return 0
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    echo "{\"step\": \"$name\", \"limit_s\": $limit}"
    timeout "$limit" "$@"
    rc=$?
    [ "$rc" -ne 0 ] && echo "{\"step\": \"$name\", \"exit\": $rc, \"limit_s\": $limit}"
    return 0
}

step rhn_step 150 "$PY" benchmarks/bench_train_step.py --model rhn "${SIZE[@]}" --variants "eager,${GRAPH}unfused" \
    --batches 10 --repeat 3 --device "$DEVICE"
step stacked_lstm 90 "$PY" benchmarks/gpu_check.py --model stacked_lstm "${SIZE[@]}" --device "$DEVICE" \
    $([ "$DEVICE" = cuda ] || echo --batches 3 --top 8)
step ls_fast 90 "$PY" benchmarks/bench_lyapunov.py --only e --device "$DEVICE" "${LS_SIZE[@]}"
step graph_tests 45 "$PY" -m pytest -q -p no:cacheprovider tests/test_graph_step.py
step search_split 170 env "${SEARCH_ENV[@]}" SEARCH_TIMEOUT=150 PYTHON="$PY" OUT="$WORK" bash benchmarks/gpu_search.sh
step packing_lstm 80 "$PY" benchmarks/gpu_packing.py --model stacked_lstm "${SIZE[@]}" --batches 20 \
    --trials 1,2,4,8 --device "$DEVICE"
step stacked_step 40 "$PY" benchmarks/bench_train_step.py --model stacked_lstm "${SIZE[@]}" --variants "eager${GRAPH:+,graph}" \
    --batches 30 --repeat 3 --device "$DEVICE"
step rhn 60 "$PY" benchmarks/gpu_check.py --model rhn "${SIZE[@]}" --batches 5 --device "$DEVICE" \
    $([ "$DEVICE" = cuda ] || echo --top 8)
step awd_lstm_mos 60 "$PY" benchmarks/gpu_check.py --model awd_lstm_mos "${SIZE[@]}" --batches 10 --device "$DEVICE" \
    $([ "$DEVICE" = cuda ] || echo --top 8)
step packing_rhn 45 "$PY" benchmarks/gpu_packing.py --model rhn "${SIZE[@]}" --batches 4 --trials 1,4 --device "$DEVICE"
echo "{\"step\": \"done\", \"budget_s\": $BUDGET_S, \"left_s\": $(( deadline - $(date +%s) ))}"
