#!/usr/bin/env bash
# One command for a GPU machine: parity vs the CPU goldens, fp16/bf16 error in mm, per-stage latency at
# 1280x720 for 1/2/4 hands (eager, device crops, CUDA graphs, torch.compile); one JSON + a markdown table.
#
#   scripts/gpu_check.sh [--out DIR] [--wheels DIR] [run options: --size --budget-s --ways --iterations ...]
#   scripts/gpu_check.sh --fetch-wheels [--wheels DIR]    # once, on a machine with PyPI access
#
# Needs only: Python >= 3.10 with PyTorch (CUDA build), numpy, scipy, opencv, onnx, onnxruntime. No ROS,
# no TensorRT, no network, no `make setup`: the package is imported from this source tree and the two
# wheels of scripts/gpu_check_wheels.txt (smplx, psutil) are unpacked from --wheels (default
# wheels/gpu_check) into the output folder when they do not import already. Without CUDA it runs the same
# steps on the CPU with a small model and says so at the top of its output. Details: docs/performance.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
OUT="$ROOT/out/gpu_check"
WHEELS="${WILOR_GPU_CHECK_WHEELS:-$ROOT/wheels/gpu_check}"
FETCH=0
RUN_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --fetch-wheels) FETCH=1; shift ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) RUN_ARGS+=("$1"); shift ;;
  esac
done

note() { printf '[gpu_check] %s\n' "$*"; }

if [ "$FETCH" = 1 ]; then
  # cp312 manylinux wheels whatever this machine runs; the hashes in the list are enforced
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --require-hashes \
    -r "$ROOT/scripts/gpu_check_wheels.txt" -d "$WHEELS"
  note "wheels in $WHEELS ($(du -sh "$WHEELS" | cut -f1))"
  exit 0
fi

"$PY" -c "import torch, numpy, scipy, cv2" 2>/dev/null \
  || { echo "[gpu_check] error: $PY needs torch, numpy, scipy and opencv (cv2)" >&2; exit 2; }
mkdir -p "$OUT/site-packages"
OUT="$(cd "$OUT" && pwd)"
# the package from this source tree, then the unpacked wheels, then whatever the caller had
export PYTHONPATH="$ROOT/wilor_ros:$OUT/site-packages${PYTHONPATH:+:$PYTHONPATH}"
note "python: $("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())')"
"$PY" -m wilor_ros.tools.gpu_check install-wheels --wheels "$WHEELS" --target "$OUT/site-packages"
exec "$PY" -m wilor_ros.tools.gpu_check run --out "$OUT" "${RUN_ARGS[@]+"${RUN_ARGS[@]}"}"
