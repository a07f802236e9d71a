#!/usr/bin/env bash
# One-GPU throughput check, at most 8 minutes on one H100: Base-tokenizer and AR-B bf16 training
# (images/s, tokens/s, MFU), AR-B sampling at batch 256 with CFG (eager and compiled), encoding
# images/s and the time of a torch-fidelity FID over 10,000 images. See benchmarks/gpu_check.py.
# Usage: benchmarks/gpu_check.sh [--tiny] [--only tokenizer ar sample encode fid]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
