#!/usr/bin/env bash
# The GPU check, in one command (benchmarks/gpu_check.py says what it runs): on a GPU machine whose python3 already
# has torch, jax, flax and transformers, with nothing to install (the project runs from this source tree):
#
#   benchmarks/gpu_check.sh                        # the matrix and the timings on the GPU (at most 8 minutes)
#   benchmarks/gpu_check.sh --device cpu --quick   # every step on a tiny model on the CPU (what CI runs)
#
# Results: gpu-check.json and gpu-check.md (with the matrix's log) in $OUT if set, else benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
