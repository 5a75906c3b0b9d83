"""The per-image result of predict: `Boxes` (numpy) and `Result` (boxes + image + names + timings), with
drawing and the saved forms (annotated image, YOLO label file, crops, JSON).

numpy + cv2 only (no torch).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.files import atomic_imwrite, atomic_write_bytes
from yolonas_cli.data.plotting import as_bgr_uint8, draw_detections


class Boxes:
    """Detections of one image: `data` float32 [N, 6] = x1, y1, x2, y2, conf, cls in original-image pixels,
    with `orig_shape` (h, w) for the normalised forms."""

    def __init__(self, data: np.ndarray, orig_shape: tuple[int, int]):
        data = np.asarray(data, dtype=np.float32)
        if data.size == 0:
            data = data.reshape(0, 6)
        if data.ndim != 2 or data.shape[1] != 6:
            raise ValueError(f"Boxes needs an [N, 6] array (x1, y1, x2, y2, conf, cls), got {data.shape}")
        self.data = data
        self.orig_shape = (int(orig_shape[0]), int(orig_shape[1]))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: Any) -> Boxes:
        return Boxes(self.data[index].reshape(-1, 6), self.orig_shape)

    def __repr__(self) -> str:
        return f"Boxes(n={len(self)}, orig_shape={self.orig_shape})"

    @property
    def xyxy(self) -> np.ndarray:
        """[N, 4] x1, y1, x2, y2 in pixels."""
        return self.data[:, :4]

    @property
    def conf(self) -> np.ndarray:
        """[N] confidences."""
        return self.data[:, 4]

    @property
    def cls(self) -> np.ndarray:
        """[N] class ids (float32, as in `data`)."""
        return self.data[:, 5]

    @property
    def xywh(self) -> np.ndarray:
        """[N, 4] centre x, centre y, width, height in pixels."""
        xyxy = self.xyxy
        wh = xyxy[:, 2:] - xyxy[:, :2]
        return np.concatenate([xyxy[:, :2] + wh / 2, wh], axis=1)

    @property
    def xyxyn(self) -> np.ndarray:
        """[N, 4] x1, y1, x2, y2 divided by the image width and height."""
        return self.xyxy / self._scale()

    @property
    def xywhn(self) -> np.ndarray:
        """[N, 4] centre x, centre y, width, height divided by the image width and height."""
        return self.xywh / self._scale()

    def _scale(self) -> np.ndarray:
        h, w = self.orig_shape
        return np.array([w, h, w, h], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Result:
    """The detections of one image (or video frame).

    `orig_img` is the decoded BGR image (None when not kept), `orig_shape` its (h, w), `path` the source path
    (or a name such as "image0.jpg" for in-memory images), `speed` the per-stage times in ms
    {preprocess, inference, postprocess}, `input_shape` the (h, w) of the network input."""

    boxes: Boxes
    names: dict[int, str]
    orig_img: np.ndarray | None
    orig_shape: tuple[int, int]
    path: str
    speed: dict[str, float] = field(default_factory=dict)
    input_shape: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def name_of(self, class_id: float | int) -> str:
        """The class name of an id (the id as text when `names` lacks it)."""
        return self.names.get(int(class_id), str(int(class_id)))

    def verbose(self) -> str:
        """Counts per class in class-index order, e.g. "1 cup, 2 spoons, ", or "(no detections), "."""
        if len(self.boxes) == 0:
            return "(no detections), "
        ids, counts = np.unique(self.boxes.cls.astype(int), return_counts=True)
        return "".join(f"{n} {self.name_of(k)}{'s' if n > 1 else ''}, " for k, n in zip(ids, counts))

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """One dict per box: {name, class, confidence, box: {x1, y1, x2, y2}} (box divided by w/h when
        `normalize`), values rounded to `decimals`."""
        xyxy = self.boxes.xyxyn if normalize else self.boxes.xyxy
        return [
            {
                "name": self.name_of(k),
                "class": int(k),
                "confidence": round(float(c), decimals),
                "box": {key: round(float(v), decimals) for key, v in zip(("x1", "y1", "x2", "y2"), box)},
            }
            for box, c, k in zip(xyxy, self.boxes.conf, self.boxes.cls)
        ]

    def to_json(self, normalize: bool = False, decimals: int = 5) -> str:
        """`summary()` as a JSON array (indented)."""
        return json.dumps(self.summary(normalize=normalize, decimals=decimals), indent=2)

    def plot(self, line_width: int | None = None, labels: bool = True, conf: bool = True) -> np.ndarray:
        """An annotated BGR uint8 copy of the original image (same height and width)."""
        img = self._require_image("plot")
        boxes = self.boxes
        return draw_detections(
            img, boxes.xyxy, boxes.conf, boxes.cls, self.names, line_width=line_width, labels=labels, show_conf=conf
        )

    def save(self, filename: str | os.PathLike[str] | None = None, **plot_args: Any) -> str:
        """Plot and write the annotated image atomically (default name `results_<image name>`); returns the
        file name. `plot_args` go to `plot()`."""
        filename = filename or f"results_{Path(self.path).name}"
        atomic_imwrite(filename, self.plot(**plot_args))
        return str(filename)

    def save_txt(self, path: str | os.PathLike[str], save_conf: bool = False) -> str | None:
        """Write the YOLO label file (`cls xc yc w h` normalised, + conf when `save_conf`, `%g` numbers),
        atomically, replacing an old file. No file when there are no detections (returns None)."""
        if len(self.boxes) == 0:
            return None
        rows = np.concatenate([self.boxes.cls[:, None], self.boxes.xywhn], axis=1)
        if save_conf:
            rows = np.concatenate([rows, self.boxes.conf[:, None]], axis=1)
        text = "".join(" ".join(f"{v:g}" for v in row) + "\n" for row in rows.tolist())
        atomic_write_bytes(path, text.encode("ascii"))
        return str(path)

    def save_crop(self, save_dir: str | os.PathLike[str], file_stem: str) -> list[Path]:
        """Save each box's crop as `<save_dir>/crops/<class name>/<file_stem>.jpg`; later crops of the same
        class in this image are named `<file_stem>-2.jpg`, `-3`, .... Returns the written paths."""
        img = as_bgr_uint8(self._require_image("save_crop"))
        h, w = img.shape[:2]
        seen: dict[str, int] = {}
        written = []
        for (x1, y1, x2, y2), k in zip(np.round(self.boxes.xyxy).astype(int), self.boxes.cls):
            x1, x2 = np.clip([x1, x2], 0, w)
            y1, y2 = np.clip([y1, y2], 0, h)
            if x2 <= x1 or y2 <= y1:
                continue
            folder = _safe_folder_name(self.name_of(k))
            seen[folder] = seen.get(folder, 0) + 1
            suffix = "" if seen[folder] == 1 else f"-{seen[folder]}"
            target = Path(save_dir) / "crops" / folder / f"{file_stem}{suffix}.jpg"
            written.append(atomic_imwrite(target, img[y1:y2, x1:x2]))
        return written

    def _require_image(self, what: str) -> np.ndarray:
        if self.orig_img is None:
            raise YoloNasError(f"{what}() needs the original image, which this result did not keep")
        return self.orig_img


def _safe_folder_name(name: str) -> str:
    """A class name usable as one folder name (path separators and control characters replaced)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip(" .")
    return cleaned or "_"
