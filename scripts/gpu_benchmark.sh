#!/usr/bin/env bash
# GPU benchmark of YOLO-NAS S (fixture formula weights: same speed as the real ones) on one CUDA GPU:
# the unfused eager baseline, PyTorch FP32 and FP16, ONNX Runtime (CUDA when onnxruntime-gpu is installed)
# and TensorRT FP32/FP16/INT8 engines (when the tensorrt package is installed; rows say "not available"
# otherwise). Everything runs offline; the table is printed and saved under $OUT (or runs/benchmark_gpu).
#
#   bash scripts/gpu_benchmark.sh                 # S at 640, batch 1
#   BATCH=8 bash scripts/gpu_benchmark.sh runs=100
#
# Settings (environment): VARIANT (s), IMGSZ (640), BATCH (1), DEVICE (0), FORMATS (pytorch,onnx,engine),
# RUNS (50), WARMUP (10), BUDGET_S (450: the benchmark is stopped after this many seconds, so that the
# script ends within 8 minutes; the weights take a few seconds more). Extra key=value arguments are passed
# to `yolo-nas benchmark` and win over these.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$ROOT/runs/benchmark_gpu}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
VARIANT="${VARIANT:-s}"

if [[ "${DEVICE:-0}" != "cpu" ]]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
fi
"$PY" - <<EOF
import importlib.util
for name in ("tensorrt", "onnxruntime", "onnx"):
    print(f"{name}: {'installed' if importlib.util.find_spec(name) else 'not installed'}")
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
EOF

WEIGHTS="$WORK/yolo_nas_${VARIANT}_formula.pth"
"$PY" - <<EOF
import torch
from yolonas_cli.weights.synthetic import synthetic_torch_state_dict_from_files
fixtures = "$ROOT/tests/fixtures"  # data files: the key list and BatchNorm statistics of the formula weights
net = synthetic_torch_state_dict_from_files(f"{fixtures}/keys/yolo_nas_$VARIANT.keys",
                                            f"{fixtures}/yolo_nas_${VARIANT}_bnstats.npz")
torch.save({"net": net}, "$WEIGHTS")
EOF

mkdir -p "$OUT_DIR"
set +e
timeout --signal=INT "${BUDGET_S:-450}" "$PY" -c "from yolonas_cli.cli.app import main; main()" benchmark \
  "model=$WEIGHTS" "imgsz=${IMGSZ:-640}" "batch=${BATCH:-1}" "device=${DEVICE:-0}" \
  "formats=${FORMATS:-pytorch,onnx,engine}" half=True int8=True "runs=${RUNS:-50}" "warmup=${WARMUP:-10}" \
  "project=$WORK/runs" name=gpu "$@" 2>&1 | tee "$OUT_DIR/benchmark_log.txt"
status=${PIPESTATUS[0]}
set -e
if [[ -d "$WORK/runs/gpu" ]]; then
  cp "$WORK/runs/gpu/"benchmark.* "$OUT_DIR/"
  echo "Saved benchmark.csv, benchmark.json and benchmark.md to $OUT_DIR"
fi
if [[ $status -eq 124 || $status -eq 130 ]]; then
  echo "The benchmark did not finish within BUDGET_S=${BUDGET_S:-450} s (TensorRT builds are the slow part):"
  echo "rerun with fewer formats, e.g. FORMATS=pytorch,engine"
fi
exit "$status"
