#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the GPU tests and the GPU benchmark, in one run.
#
#   bash scripts/gpu_check.sh [--with-mamba-ssm] [--skip-bench] [--out DIR]
#
# 1. An environment: ./.venv if there is one; else, where the machine's python3 already has PyTorch with CUDA and
#    the package's model dependencies (transformers, timm, peft, accelerate, tokenizers, safetensors), a venv on top
#    of it (--system-site-packages) with this package installed editable and nothing downloaded (for GPU machines
#    without registry access); else scripts/bootstrap.sh (needs a registry).
# 2. --with-mamba-ssm: also build the `cuda` extra (mamba-ssm, causal-conv1d) for this GPU's architecture only, to
#    compare its path in the benchmark (needs nvcc and a registry or local wheels; the Triton path needs no build).
#    mamba-ssm 2.3.2 / causal-conv1d 1.7.0 compile with -std=c++17, which torch releases from 2.10 on reject (their
#    headers require C++20); if the build fails the check says so and goes on without that path.
# 3. The Triton kernels compiled for this GPU (registers, spills), tests/test_gpu.py and tests/test_ops_triton.py on
#    the GPU (compiled kernels, not the interpreter), then benchmarks/bench_gpu.py; logs and JSON go to --out
#    (default: gpu-check/). Exit code 0 when every test passed.
set -uo pipefail
cd "$(dirname "$0")/.."

WITH_MAMBA_SSM=0
SKIP_BENCH=0
OUT=gpu-check
while [ $# -gt 0 ]; do
    case "$1" in
        --with-mamba-ssm) WITH_MAMBA_SSM=1; shift ;;
        --skip-bench) SKIP_BENCH=1; shift ;;
        --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
        *) echo "gpu_check.sh: unknown argument $1 (expected --with-mamba-ssm, --skip-bench, --out DIR)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader; then
    echo "gpu_check.sh: no NVIDIA GPU here (nvidia-smi failed)" >&2
    exit 2
fi

MODEL_DEPS="torch transformers timm peft accelerate tokenizers safetensors numpy PIL"
has_gpu_stack() {  # $1: a python; true when it imports the model dependencies and sees a GPU
    "$1" - "$MODEL_DEPS" <<'EOF' 2>/dev/null
import importlib, sys
for name in sys.argv[1].split():
    importlib.import_module(name)
import torch
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
}

if [ -x .venv/bin/python ] && has_gpu_stack .venv/bin/python; then
    PY=.venv/bin/python
elif has_gpu_stack python3; then
    echo "[gpu_check] using this machine's PyTorch: $(python3 -c 'import torch; print(torch.__version__)')"
    python3 -m venv --system-site-packages .venv-gpu
    .venv-gpu/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
    PY=.venv-gpu/bin/python
else
    echo "[gpu_check] no usable PyTorch with CUDA here: building the locked environment (needs a registry)"
    bash scripts/bootstrap.sh || exit 1
    PY=.venv/bin/python
fi
"$PY" -c 'import torch, triton, transformers; print("[gpu_check] torch", torch.__version__, "| triton",
    triton.__version__, "| transformers", transformers.__version__, "|", torch.cuda.get_device_name())'
ARCH=$("$PY" -c 'import torch; major, minor = torch.cuda.get_device_capability(); print(f"{major}{minor}")')

if [ "$WITH_MAMBA_SSM" = 1 ] && ! "$PY" -c 'import mamba_ssm, causal_conv1d' 2>/dev/null; then
    echo "[gpu_check] building mamba-ssm and causal-conv1d for sm_$ARCH only (several minutes)"
    if TORCH_CUDA_ARCH_LIST="${ARCH:0:-1}.${ARCH: -1}" MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE \
        MAX_JOBS=$(nproc) "$PY" -m pip install --no-build-isolation "causal-conv1d>=1.4" "mamba-ssm>=2.2" \
        >"$OUT/mamba_ssm_build.log" 2>&1; then
        echo "[gpu_check] the cuda extra is installed: the benchmark compares its path"
    else
        echo "[gpu_check] the cuda extra did not build (see $OUT/mamba_ssm_build.log; with torch >= 2.10 the usual"
        echo "            cause is its -std=c++17 against torch's C++20 headers): going on without the mamba_ssm path"
    fi
fi

status=0
echo "[gpu_check] Triton kernels compiled for sm_$ARCH"
TRITON_INTERPRET=0 "$PY" scripts/compile_triton_kernels.py --arch "$ARCH" | tee "$OUT/kernels.txt" || status=1
echo "[gpu_check] GPU tests"
KERNELS_REQUIRED=0
"$PY" -c 'import mamba_ssm, causal_conv1d' 2>/dev/null && KERNELS_REQUIRED=1
TRITON_INTERPRET=0 RRG_MAMBA_REQUIRE_CUDA_KERNELS=$KERNELS_REQUIRED "$PY" -m pytest tests/test_gpu.py \
    tests/test_ops_triton.py -v -p no:cacheprovider -m "not slow" 2>&1 | tee "$OUT/tests.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
if [ "$SKIP_BENCH" = 0 ]; then
    echo "[gpu_check] benchmarks/bench_gpu.py"
    "$PY" benchmarks/bench_gpu.py --output "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
echo "[gpu_check] done: results in $OUT/ (exit code $status)"
exit $status
