#!/usr/bin/env bash
# The GPU check in one command, on a machine with this repository and a CUDA build of torch:
#
#   bash bench/gpu.sh [CORPUS]      CORPUS: a real corpus (bench/real_corpus.py), default corpus/real
#
# Environment: OUT (default bench/results/gpu), PRETRAIN_SECONDS (default 170),
# WEARSSL_BENCH_COMMIT (the commit, where the tree is a copy without git).
# 1. bench/run.py --device cuda --size full: the Ray Data -> Ray Train pipeline and the rest of
#    the harness, where Ray and MLflow are installed (skipped, saying so, where they are not);
# 2. bench/gpu.py: bf16 features against fp32, the model step's variants and MFU, an
#    end-to-end loop, and a few minutes of pre-training on the real corpus (needs only torch,
#    numpy, pyarrow, psutil). Everything lands in OUT as JSON and Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:-corpus/real}"
out="${OUT:-bench/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD/platform${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
if python3 -c "import ray, mlflow, pydantic" 2>/dev/null; then
    python3 bench/run.py --device cuda --size full --out "$out/run.json"
else
    echo "bench/run.py skipped: Ray, MLflow or pydantic is not installed on this machine"
fi
python3 bench/gpu.py --data "$corpus" --out "$out" --device cuda --size full \
    --pretrain-seconds "${PRETRAIN_SECONDS:-170}"
