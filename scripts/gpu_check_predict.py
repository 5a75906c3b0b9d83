"""GPU check for predict: the fused S model (fixture formula weights) on CUDA in FP32 and FP16 against the
CPU pipeline on the bundled photos, plus the original's predict fixture. Run: python scripts/gpu_check_predict.py

Prints one line per check and exits 1 if a check fails. Needs a CUDA GPU (the device tool's machine)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from yolonas_cli import NAS
from yolonas_cli.weights.synthetic import synthetic_torch_state_dict_from_files

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # the original's outputs (data files)


def match(reference, result) -> tuple[float, float, float]:
    """Greedy same-class IoU>0.5 matching of `result` to `reference`: (recall, max box diff, max conf diff)."""
    from yolonas_cli.engine.ops import box_iou

    reference, result = reference.numpy(), result.numpy()  # the boxes as numpy arrays, wherever they were
    if len(reference.boxes) == 0:
        return 1.0, 0.0, 0.0
    iou = box_iou(torch.from_numpy(reference.boxes.xyxy), torch.from_numpy(result.boxes.xyxy)).numpy()
    iou[reference.boxes.cls[:, None] != result.boxes.cls[None, :]] = 0
    found, box, conf, used = 0, 0.0, 0.0, set()
    for i in range(len(reference.boxes)):
        j = int(np.argmax(iou[i])) if iou.shape[1] else -1
        if j < 0 or iou[i, j] <= 0.5 or j in used:
            continue
        used.add(j)
        found += 1
        box = max(box, float(np.abs(reference.boxes.xyxy[i] - result.boxes.xyxy[j]).max()))
        conf = max(conf, abs(float(reference.boxes.conf[i] - result.boxes.conf[j])))
    return found / len(reference.boxes), box, conf


def main() -> int:
    if not torch.cuda.is_available():
        print("FAIL no CUDA device")
        return 1
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    weights = Path(tempfile.mkdtemp()) / "s.pth"
    torch.save(
        {
            "net": synthetic_torch_state_dict_from_files(
                FIXTURES / "keys/yolo_nas_s.keys", FIXTURES / "yolo_nas_s_bnstats.npz"
            )
        },
        weights,
    )
    ref = json.loads((FIXTURES / "yolo_nas_s_predict.json").read_text())
    cpu = {Path(r.path).name: r for r in NAS(weights)(device="cpu", verbose=False)}
    failures = 0
    for device, half, box_tol, conf_tol in [("cuda", False, 0.05, 1e-4), ("cuda", True, 2.0, 2e-2)]:
        model = NAS(weights)
        model(device=device, half=half, verbose=False)  # warm-up
        start = time.perf_counter()
        results = model(device=device, half=half, verbose=False)
        ms = (time.perf_counter() - start) * 1e3 / len(results)
        on_device = all(r.boxes.data.device.type == "cuda" for r in results)  # Ultralytics: on the model's device
        failures += not on_device
        print(f"{'ok  ' if on_device else 'FAIL'} {device} half={half}: result boxes are tensors on the GPU")
        for result in results:
            name = Path(result.path).name
            expected = ref[f"{name}|conf=0.25|iou=0.7"]
            base = cpu[name]
            recall, diff_box, diff_conf = match(base, result)
            ok = recall >= (1.0 if not half else 0.9) and diff_box <= box_tol and diff_conf <= conf_tol
            failures += not ok
            print(
                f"{'ok  ' if ok else 'FAIL'} {device} half={half} {name}: {len(result.boxes)} dets "
                f"(cpu {len(base.boxes)}, original {len(expected['labels'])}), cpu detections found {recall:.2f}, "
                f"matched max box diff {diff_box:.2e} px, max conf diff {diff_conf:.2e}"
            )
        print(f"     {device} half={half}: {ms:.1f} ms per image end to end (4 photos, batch 1)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
