#!/usr/bin/env bash
# GPU check for a lent GPU machine (never a test dependency). One prepared run, <= 8 minutes:
#   bash benchmarks/gpu_check.sh            # from the repository root
# Uses the machine's own python3 with PyTorch + CUDA (no network needed); lsh_tune is put on the
# path from this checkout. Prints JSON lines: epoch time of the paper-preset candidate and dense
# reference on CUDA (scaled from a few batches to a full PTB epoch), the full LS time and its
# share of an epoch, and the CUDA-vs-CPU float64 LS difference (must be <= 1e-6).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -c "import torch, sklearn, scipy; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 300 "$PY" benchmarks/gpu_check.py --model stacked_lstm
timeout 150 "$PY" benchmarks/gpu_check.py --model rhn --batches 10
