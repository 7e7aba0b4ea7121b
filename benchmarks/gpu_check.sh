#!/usr/bin/env bash
# GPU check for a lent GPU machine (never a test dependency). One prepared run, the steps' limits add up to 10 minutes
# (most important first; typically about 6):
#   bash benchmarks/gpu_check.sh            # from the repository root
# Uses the machine's own python3 with PyTorch + CUDA (no network needed); lsh_tune is put on the
# path from this checkout. Prints JSON lines (each step has its own time limit; run in the order
# 1 (stacked LSTM, RHN), 4, 5, 1 (AWD-LSTM-MoS), 2, 3):
#   1. per paper model (stacked LSTM, RHN, AWD-LSTM-MoS): seconds per batch of the sparse candidate
#      and the dense reference, scaled to a full epoch; the full LS (layered QR) time and its share
#      of an epoch; the CUDA-vs-CPU float64 LS difference (must be <= 1e-6);
#   2. the LS of the paper stacked LSTM (2x1500, N = 3000) with qr='cholesky' vs qr='layered',
#      h and hc: seconds, ratio, max |dlambda| and the fallbacks (target: h <= 0.18 s, 1 % of an epoch);
#   3. training throughput of 1/2/4/8 trial processes sharing the GPU (stacked LSTM, RHN): the
#      measurement behind --gpus-per-trial auto (lsh_tune/search/packing.py);
#   4. the training step eager vs recorded in a CUDA graph (paper RHN and stacked LSTM; RHN also
#      with the highway cell's plain autograd backward): seconds per batch and ratios (target: RHN <= 20 ms);
#   5. the CUDA-only tests (tests/test_graph_step.py: graph step vs eager curve).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -c "import torch, sklearn, scipy; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 100 "$PY" benchmarks/gpu_check.py --model stacked_lstm
timeout 75 "$PY" benchmarks/gpu_check.py --model rhn --batches 5
timeout 75 "$PY" benchmarks/bench_train_step.py --model rhn --preset paper --variants eager,graph,unfused --batches 20 --repeat 3 --device cuda || true
timeout 45 "$PY" benchmarks/bench_train_step.py --model stacked_lstm --preset paper --variants eager,graph --batches 30 --repeat 3 --device cuda || true
timeout 45 "$PY" -m pytest -q -p no:cacheprovider tests/test_graph_step.py || true
timeout 75 "$PY" benchmarks/gpu_check.py --model awd_lstm_mos --batches 10 || true
timeout 75 "$PY" benchmarks/bench_lyapunov.py --only e --device cuda --width 1500 --repeat 3
timeout 80 "$PY" benchmarks/gpu_packing.py --model stacked_lstm --batches 20 --trials 1,2,4,8
timeout 60 "$PY" benchmarks/gpu_packing.py --model rhn --batches 4 --trials 1,4
