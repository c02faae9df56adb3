#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: install the `cuda` extra (mamba-ssm, causal-conv1d) into the locked environment
# and run the CUDA-vs-CPU parity tests of selective_scan, causal_conv1d and their step forms, one bf16 training step
# and generate() of both tiny models (tests/test_gpu.py). Building the two CUDA packages needs nvcc and takes a while.
#
#   bash scripts/gpu_check.sh            # prints the pytest summary; exit code 0 when everything passed
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
bash scripts/bootstrap.sh
# The kernels compile against the installed torch: no build isolation, so they see it.
.venv/bin/pip install --quiet --no-build-isolation -c requirements/lock.txt -e ".[cuda]"
RRG_MAMBA_REQUIRE_CUDA_KERNELS=1 .venv/bin/python -m pytest tests/test_gpu.py -v -p no:cacheprovider
