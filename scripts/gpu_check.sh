#!/usr/bin/env bash
# GPU check for `yolo-nas export`: TensorRT FP32/FP16/INT8 engines and the in-graph NMS, ONNX Runtime CUDA and
# TorchScript CUDA, each against the torch model (fixture-formula YOLO-NAS S, made on the fly). Under 8 minutes.
# Usage: bash scripts/gpu_check.sh [--imgsz 640]     (PYTHON=/path/to/python to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
"$PY" - <<'CHECK'
import importlib.util, sys
missing = [m for m in ("torch", "onnx", "onnxruntime", "tensorrt") if importlib.util.find_spec(m) is None]
if missing:
    print("note: not installed: " + ", ".join(missing) + " (pip install 'yolo-nas[onnx,tensorrt]'); "
          "the checks that need them are skipped", file=sys.stderr)
CHECK
exec timeout 470 "$PY" scripts/gpu_check.py "$@"
