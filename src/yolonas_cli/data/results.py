"""The per-image result of predict, with Ultralytics' API: `Boxes` (torch tensors on the model's device, or
numpy arrays) and `Result` (boxes + image + names + timings), with drawing, showing and the saved forms
(annotated image, YOLO label file, crops, JSON, CSV, a pandas DataFrame).

    r = model("photo.jpg")[0]
    r.boxes.xyxy.cpu().numpy(), r.boxes.cls.int().tolist(), r.boxes.conf
    for box in r.boxes: x1, y1, x2, y2 = box.xyxy[0].tolist()
    cv2.imwrite("out.jpg", r.plot())

Segmentation, classification, pose and oriented boxes do not exist for YOLO-NAS: `masks`, `probs`,
`keypoints` and `obb` are None so that generic code runs.

Importing this module does not import torch (results of numpy arrays can be drawn and saved in light
processes): data that is a tensor means torch is already imported, and the few torch calls import it then.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np

from yolonas_cli.core import console
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.files import atomic_imwrite, atomic_write_bytes
from yolonas_cli.core.install import require
from yolonas_cli.data.display import close_window, display_problem, show_image
from yolonas_cli.data.plotting import as_bgr_uint8, draw_detections

if TYPE_CHECKING:
    from typing import TypeGuard

    import torch

Array = Union["torch.Tensor", np.ndarray]
BOX_KEYS = ("x1", "y1", "x2", "y2")


def _is_tensor(values: Any) -> TypeGuard[torch.Tensor]:
    """True for a torch.Tensor (without importing torch: a tensor exists only once torch is imported)."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(values, torch_module.Tensor)


def _as_numpy(values: Array) -> np.ndarray:
    """A numpy view (CPU tensors) or copy (other devices) of `values`."""
    return values.detach().cpu().numpy() if _is_tensor(values) else np.asarray(values)


def _as_tensor(values: Array) -> torch.Tensor:
    import torch

    return torch.as_tensor(values)


class Boxes:
    """Detections of one image in Ultralytics' layout, in original-image pixels.

    `data` [N, 6] rows (x1, y1, x2, y2, conf, cls), or [N, 7] rows (x1, y1, x2, y2, track id, conf, cls) once
    tracked (`is_track`); a torch.Tensor (predict puts it on the model's device) or a numpy array, and every
    property returns the same kind. `orig_shape` (h, w) gives the normalised forms. A 1-D row is one box.
    Indexing (an int, a slice, a boolean mask, an index list) gives Boxes; iterating gives one Boxes per box.
    """

    def __init__(self, boxes: Array | list[Any], orig_shape: tuple[int, int]):
        data = boxes if isinstance(boxes, np.ndarray) or _is_tensor(boxes) else np.asarray(boxes, dtype=np.float32)
        if data.ndim == 1:
            data = data.reshape(0, 6) if data.shape[0] == 0 else data[None, :]
        if data.ndim != 2 or data.shape[1] not in (6, 7):
            raise ValueError(
                "Boxes needs an [N, 6] array (x1, y1, x2, y2, conf, cls) or [N, 7] (x1, y1, x2, y2, track id, "
                f"conf, cls), got shape {tuple(data.shape)}"
            )
        self.data = data
        self.orig_shape = (int(orig_shape[0]), int(orig_shape[1]))

    # --- the columns ----------------------------------------------------------------------------------
    @property
    def is_track(self) -> bool:
        """True when the rows carry a track id (7 columns)."""
        return self.data.shape[1] == 7

    @property
    def xyxy(self) -> Array:
        """[N, 4] x1, y1, x2, y2 in pixels."""
        return self.data[:, :4]

    @property
    def conf(self) -> Array:
        """[N] confidences."""
        return self.data[:, -2]

    @property
    def cls(self) -> Array:
        """[N] class ids (float, as in `data`)."""
        return self.data[:, -1]

    @property
    def id(self) -> Array | None:
        """[N] track ids, or None before tracking."""
        return self.data[:, -3] if self.is_track else None

    @property
    def xywh(self) -> Array:
        """[N, 4] centre x, centre y, width, height in pixels."""
        xyxy = self.xyxy
        if _is_tensor(xyxy):
            import torch

            return torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)
        return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)

    @property
    def xyxyn(self) -> Array:
        """[N, 4] x1, y1, x2, y2 divided by the image width and height."""
        return self.xyxy / self._scale()

    @property
    def xywhn(self) -> Array:
        """[N, 4] centre x, centre y, width, height divided by the image width and height."""
        return self.xywh / self._scale()

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of `data`: (N, 6) or (N, 7)."""
        return tuple(self.data.shape)

    def _scale(self) -> Array:
        h, w = self.orig_shape
        if _is_tensor(self.data):
            import torch

            return torch.tensor([w, h, w, h], dtype=self.data.dtype, device=self.data.device)
        return np.array([w, h, w, h], dtype=cast(np.ndarray, self.data).dtype)

    # --- container -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: Any) -> Boxes:
        return Boxes(self.data[index], self.orig_shape)

    def __iter__(self) -> Iterator[Boxes]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        kind = f"tensor on {self.data.device}" if _is_tensor(self.data) else "numpy"
        track = ", tracked" if self.is_track else ""
        return f"Boxes(n={len(self)}, orig_shape={self.orig_shape}, {kind}{track})"

    # --- devices and kinds -----------------------------------------------------------------------------
    def cpu(self) -> Boxes:
        """The boxes with `data` on the CPU (numpy data stays numpy)."""
        return Boxes(self.data.cpu(), self.orig_shape) if _is_tensor(self.data) else self

    def numpy(self) -> Boxes:
        """The boxes with `data` as a numpy array."""
        return self if isinstance(self.data, np.ndarray) else Boxes(_as_numpy(self.data), self.orig_shape)

    def cuda(self) -> Boxes:
        """The boxes with `data` as a tensor on the current CUDA device."""
        return Boxes(_as_tensor(self.data).cuda(), self.orig_shape)

    def to(self, *args: Any, **kwargs: Any) -> Boxes:
        """The boxes with `data` as a tensor moved/cast by `torch.Tensor.to(*args, **kwargs)`."""
        return Boxes(_as_tensor(self.data).to(*args, **kwargs), self.orig_shape)


@dataclass(eq=False, repr=False)
class Result:
    """The detections of one image (or video frame): Ultralytics' `Results` for detection.

    `boxes`: the `Boxes`; `names` {class id: name}; `orig_img` the decoded BGR image (None when not kept);
    `orig_shape` its (h, w); `path` the source path (or "image0.jpg" for in-memory images); `speed` the per-stage
    times in ms {preprocess, inference, postprocess}; `input_shape` the (h, w) of the network input; `save_dir`
    the run folder when predict saved something, else None. `len(r)` is the number of detections and `r[i]` a
    Result holding detection i (or a slice, or a boolean mask of them).
    """

    boxes: Boxes
    names: dict[int, str]
    orig_img: np.ndarray | None
    orig_shape: tuple[int, int]
    path: str
    speed: dict[str, float] = field(default_factory=dict)
    input_shape: tuple[int, int] | None = None
    save_dir: str | None = None

    # --- what detection does not have (present so that generic Ultralytics code runs) -------------------
    masks = None
    probs = None
    keypoints = None
    obb = None

    # --- container, devices ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.boxes)

    def __repr__(self) -> str:
        return f"Result(path={self.path!r}, orig_shape={self.orig_shape}, boxes={self.boxes!r}, speed={self.speed})"

    def __getitem__(self, index: Any) -> Result:
        return self._with_boxes(self.boxes[index])

    def cpu(self) -> Result:
        """A Result with the boxes on the CPU."""
        return self._with_boxes(self.boxes.cpu())

    def numpy(self) -> Result:
        """A Result with the boxes as numpy arrays."""
        return self._with_boxes(self.boxes.numpy())

    def cuda(self) -> Result:
        """A Result with the boxes on the current CUDA device."""
        return self._with_boxes(self.boxes.cuda())

    def to(self, *args: Any, **kwargs: Any) -> Result:
        """A Result with the boxes moved/cast by `torch.Tensor.to(*args, **kwargs)`."""
        return self._with_boxes(self.boxes.to(*args, **kwargs))

    def new(self) -> Result:
        """An empty Result (no detections) of the same image, path and names."""
        empty = Boxes(np.zeros((0, 6), np.float32), self.orig_shape)
        return Result(empty, self.names, self.orig_img, self.orig_shape, self.path, input_shape=self.input_shape)

    def update(self, boxes: Array | None = None) -> None:
        """Replace the boxes (in place) with `boxes` [N, 6] or [N, 7] (see `Boxes`), clipped to the image."""
        if boxes is not None:
            self.boxes = Boxes(_clip_to_image(boxes, self.orig_shape), self.orig_shape)

    def _with_boxes(self, boxes: Boxes) -> Result:
        return dataclasses.replace(self, boxes=boxes)

    # --- text ------------------------------------------------------------------------------------------
    def name_of(self, class_id: float | int) -> str:
        """The class name of an id (the id as text when `names` lacks it)."""
        return self.names.get(int(class_id), str(int(class_id)))

    def verbose(self) -> str:
        """Counts per class in class-index order, e.g. "1 cup, 2 spoons, ", or "(no detections), "."""
        if len(self.boxes) == 0:
            return "(no detections), "
        ids, counts = np.unique(_as_numpy(self.boxes.cls).astype(int), return_counts=True)
        return "".join(f"{n} {self.name_of(k)}{'s' if n > 1 else ''}, " for k, n in zip(ids, counts))

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """One dict per box: {name, class, confidence, box: {x1, y1, x2, y2}} (+ track_id once tracked); the box
        divided by the image width/height when `normalize`; values rounded to `decimals`."""
        boxes = self.boxes.numpy()
        xyxy = boxes.xyxyn if normalize else boxes.xyxy
        ids = boxes.id
        rows = []
        for i, (box, c, k) in enumerate(zip(xyxy, boxes.conf, boxes.cls)):
            row: dict[str, Any] = {
                "name": self.name_of(k),
                "class": int(k),
                "confidence": round(float(c), decimals),
                "box": {key: round(float(v), decimals) for key, v in zip(BOX_KEYS, box)},
            }
            if ids is not None:
                row["track_id"] = int(ids[i])
            rows.append(row)
        return rows

    def to_json(self, normalize: bool = False, decimals: int = 5) -> str:
        """`summary()` as a JSON array (indented)."""
        return json.dumps(self.summary(normalize=normalize, decimals=decimals), indent=2)

    def to_df(self, normalize: bool = False, decimals: int = 5) -> Any:
        """`summary()` as a pandas DataFrame (columns name, class, confidence, box [+ track_id]); needs pandas."""
        pandas = require("pandas", "to_df()")
        columns = ["name", "class", "confidence", "box"] + (["track_id"] if self.boxes.is_track else [])
        return pandas.DataFrame(self.summary(normalize=normalize, decimals=decimals), columns=columns)

    def to_csv(self, normalize: bool = False, decimals: int = 5) -> str:
        """`summary()` as CSV text with the box spread over columns: name, class, confidence, x1, y1, x2, y2
        [, track_id]. Needs nothing beyond the standard library."""
        columns = ["name", "class", "confidence", *BOX_KEYS] + (["track_id"] if self.boxes.is_track else [])
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.summary(normalize=normalize, decimals=decimals):
            writer.writerow({**{k: v for k, v in row.items() if k != "box"}, **row["box"]})
        return text.getvalue()

    # --- pictures --------------------------------------------------------------------------------------
    def plot(
        self,
        conf: bool = True,
        line_width: int | None = None,
        labels: bool = True,
        boxes: bool = True,
        img: np.ndarray | None = None,
        show: bool = False,
        save: bool = False,
        filename: str | os.PathLike[str] | None = None,
    ) -> np.ndarray:
        """An annotated BGR uint8 copy of the original image (or of `img`, same size), as Ultralytics' `plot`:
        boxes (`boxes`), "name 0.87" labels (`labels`, `conf`), `line_width` in pixels (None: scaled to the
        image). `show` also shows it (see `show`); `save` also writes it to `filename`."""
        base = self._require_image("plot") if img is None else img
        picked = self.boxes.numpy() if boxes else Boxes(np.zeros((0, 6), np.float32), self.orig_shape)
        xyxy, scores, cls = (_as_numpy(v) for v in (picked.xyxy, picked.conf, picked.cls))
        annotated = draw_detections(base, xyxy, scores, cls, self.names, line_width, labels=labels, show_conf=conf)
        if show:
            self._show(annotated)
        if save:
            atomic_imwrite(filename or f"results_{Path(self.path).name}", annotated)
        return annotated

    def show(self, **plot_args: Any) -> None:
        """Show the annotated image in a window until a key is pressed. Without a display (a headless
        machine), one warning line says why and nothing else happens. `plot_args` go to `plot()`."""
        self._show(self.plot(**plot_args))

    def _show(self, annotated: np.ndarray) -> None:
        problem = display_problem()
        if problem is not None:
            console.warn(f"show(): cannot open a window: {problem}; use save() or plot() instead")
            return
        show_image(str(self.path), annotated, wait_ms=0)
        close_window(str(self.path))

    def save(self, filename: str | os.PathLike[str] | None = None, **plot_args: Any) -> str:
        """Plot and write the annotated image atomically (default name `results_<image name>`); returns the
        file name. `plot_args` go to `plot()`."""
        filename = filename or f"results_{Path(self.path).name}"
        atomic_imwrite(filename, self.plot(**plot_args))
        return str(filename)

    # --- files -----------------------------------------------------------------------------------------
    def save_txt(self, txt_file: str | os.PathLike[str], save_conf: bool = False) -> str | None:
        """Write the YOLO label file (`cls xc yc w h` normalised, + conf when `save_conf`, + track id once
        tracked; `%g` numbers), atomically, replacing an old file. No file when there are no detections
        (returns None), else the file name."""
        if len(self.boxes) == 0:
            return None
        boxes = self.boxes.numpy()
        columns = [boxes.cls[:, None], boxes.xywhn]
        if save_conf:
            columns.append(boxes.conf[:, None])
        if boxes.id is not None:
            columns.append(boxes.id[:, None])
        rows = np.concatenate(columns, axis=1)
        text = "".join(" ".join(f"{v:g}" for v in row) + "\n" for row in rows.tolist())
        atomic_write_bytes(txt_file, text.encode("ascii"))
        return str(txt_file)

    def save_crop(self, save_dir: str | os.PathLike[str], file_name: str | os.PathLike[str] = "im.jpg") -> list[Path]:
        """Save each box's crop (exactly the box, clipped to the image) as
        `<save_dir>/<class name>/<file_name with a .jpg suffix>`; later crops of one class in this image get
        `-2`, `-3`, ... after the stem. Returns the written paths."""
        img = as_bgr_uint8(self._require_image("save_crop"))
        h, w = img.shape[:2]
        stem = Path(file_name).with_suffix(".jpg").stem
        boxes = self.boxes.numpy()
        seen: dict[str, int] = {}
        written = []
        for (x1, y1, x2, y2), k in zip(np.round(boxes.xyxy).astype(int), boxes.cls):
            x1, x2 = np.clip([x1, x2], 0, w)
            y1, y2 = np.clip([y1, y2], 0, h)
            if x2 <= x1 or y2 <= y1:
                continue
            folder = _safe_folder_name(self.name_of(k))
            seen[folder] = seen.get(folder, 0) + 1
            suffix = "" if seen[folder] == 1 else f"-{seen[folder]}"
            written.append(atomic_imwrite(Path(save_dir) / folder / f"{stem}{suffix}.jpg", img[y1:y2, x1:x2]))
        return written

    def _require_image(self, what: str) -> np.ndarray:
        if self.orig_img is None:
            raise YoloNasError(f"{what}() needs the original image, which this result did not keep")
        return self.orig_img


def _clip_to_image(boxes: Array, orig_shape: tuple[int, int]) -> Array:
    """A copy of [N, 6|7] rows with x1, x2 clipped to [0, w] and y1, y2 to [0, h]."""
    h, w = orig_shape
    if _is_tensor(boxes):
        out = boxes.clone()
        out[..., [0, 2]] = out[..., [0, 2]].clamp(0, w)
        out[..., [1, 3]] = out[..., [1, 3]].clamp(0, h)
        return out
    rows = boxes.copy() if isinstance(boxes, np.ndarray) else np.asarray(boxes, dtype=np.float32)
    rows[..., [0, 2]] = rows[..., [0, 2]].clip(0, w)
    rows[..., [1, 3]] = rows[..., [1, 3]].clip(0, h)
    return rows


def _safe_folder_name(name: str) -> str:
    """A class name usable as one folder name (path separators and control characters replaced)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip(" .")
    return cleaned or "_"
