"""The original's predict preprocessing (resize the longest side, centre-pad with 114, /255) and its inverse.

SuperGradients' COCO ``predict`` preprocessing for a 640x640 input (facts §6.1):

1. ``r = min(636 / H, 636 / W)``; when ``r != 1`` resize to ``(round(H * r), round(W * r))``
   (Python ``round``) with OpenCV ``INTER_LINEAR``. For other input sizes the resize target keeps the ratio
   636/640 per side (:func:`resize_target`).
2. Centre-pad with the constant 114 to the input size: ``top = (Hp - H') // 2``, ``left = (Wp - W') // 2``.
3. RGB, ``float64(x) / 255`` cast to float32, CHW.

The original's *val* protocol (``protocol=sg``) truncates the resized size instead of rounding it
(``int(H * r)``): ``Letterbox.for_image(..., truncate=True)``, the same plan otherwise.

``rect=True`` keeps step 1 but pads only up to the next multiple of the stride (32) of each resized side,
still centred: a 640x427 photo becomes 640x448 instead of 640x640 (fewer pixels, same content).

Boxes are mapped back by removing the padding and dividing by ``r``; the original does not clip, we clip by
default (``to_original(..., clip=False)`` gives the original's numbers).

Input images are OpenCV-style BGR ``uint8`` ``HxWx3``; :func:`to_bgr_uint8` lists the other layouts accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import cv2
import numpy as np
import torch
from torch import Tensor

from yolonas_cli.core.errors import UsageError
from yolonas_cli.core.sizes import STRIDE, imgsz_pair, round_up
from yolonas_cli.engine.ops import Boxes, clip_boxes

__all__ = ["PAD_VALUE", "Letterbox", "resize_target", "to_bgr_uint8"]

PAD_VALUE = 114
# The original divides uint8 by 255.0 in float64 and casts to float32. Checked on all 256 values: a float32
# division gives identical results (a multiplication by float32(1/255) does not, for 126 of them). A lookup
# table built with the original's formula is exact by construction and as fast as the division.
_UNIT_LUT = (np.arange(256, dtype=np.uint8) / 255.0).astype(np.float32)

Size = Union[int, tuple[int, int]]


def resize_target(side: int) -> int:
    """Resize target of one input side: ``side * 636 / 640`` rounded half up (640 -> 636, 320 -> 318)."""
    return (side * 159 + 80) // 160


def _positive_pair(imgsz: Size) -> tuple[int, int]:
    h, w = imgsz_pair(imgsz)
    if h <= 0 or w <= 0:
        raise UsageError(f"imgsz must be positive, got {imgsz}")
    return h, w


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Any supported image array -> contiguous BGR ``uint8`` ``HxWx3``.

    Accepted: ``HxW`` or ``HxWx1`` grayscale (replicated to three channels), ``HxWx3`` BGR, ``HxWx4`` BGRA
    (alpha dropped, not composited; as PIL's ``convert("RGB")`` does), in ``uint8`` or ``uint16``. 16-bit
    images keep their high byte (``x >> 8``), which is what ``cv2.imread`` without ``IMREAD_ANYDEPTH`` does.

    Raises:
        UsageError: for other shapes or dtypes.
    """
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise UsageError(f"images must be uint8 or uint16 arrays, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise UsageError(f"images must be HxW, HxWx1, HxWx3 or HxWx4 arrays, got shape {image.shape}")


@dataclass(frozen=True)
class Letterbox:
    """How one image of size ``orig_hw`` becomes a network input of size ``padded_hw``, and back.

    Attributes:
        orig_hw: (H, W) of the original image.
        resized_hw: (H', W') after the aspect-preserving resize.
        padded_hw: (Hp, Wp) of the network input.
        scale: the resize factor ``r`` (``resized = round(orig * r)``).
        pad_top: rows of padding above the image (``(Hp - H') // 2``).
        pad_left: columns of padding left of the image (``(Wp - W') // 2``).
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    scale: float
    pad_top: int
    pad_left: int

    @classmethod
    def for_image(
        cls,
        orig_hw: tuple[int, int],
        imgsz: Size = 640,
        rect: bool = False,
        stride: int = STRIDE,
        truncate: bool = False,
    ) -> Letterbox:
        """Plan the letterbox of an ``orig_hw = (H, W)`` image for input size ``imgsz = (h, w)`` (or an int).

        ``rect=False`` pads to exactly ``imgsz``; ``rect=True`` pads each resized side to the next multiple
        of ``stride``. ``truncate=True`` truncates the resized sides (``int(H * r)``, the original's val
        protocol) where predict rounds them (``round(H * r)``). A side that would become 0 pixels is kept at 1
        (the original fails there).
        """
        H, W = int(orig_hw[0]), int(orig_hw[1])
        if H <= 0 or W <= 0:
            raise UsageError(f"image size must be positive, got {orig_hw}")
        th, tw = _positive_pair(imgsz)
        r = min(resize_target(th) / H, resize_target(tw) / W)
        resize = int if truncate else round
        rh, rw = (H, W) if r == 1 else (max(1, resize(H * r)), max(1, resize(W * r)))
        ph, pw = (round_up(rh, stride), round_up(rw, stride)) if rect else (th, tw)
        return cls((H, W), (rh, rw), (ph, pw), r, (ph - rh) // 2, (pw - rw) // 2)

    @property
    def pad_bottom(self) -> int:
        """Rows of padding below the image."""
        return self.padded_hw[0] - self.resized_hw[0] - self.pad_top

    @property
    def pad_right(self) -> int:
        """Columns of padding right of the image."""
        return self.padded_hw[1] - self.resized_hw[1] - self.pad_left

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Network input of one image.

        Args:
            image: ``HxWx3`` BGR ``uint8`` of size ``orig_hw`` (or any layout :func:`to_bgr_uint8` accepts).

        Returns:
            ``float32`` ``[3, Hp, Wp]``, RGB, values in [0, 1], padding ``114 / 255``; a new contiguous array.
        """
        img = to_bgr_uint8(image)
        if img.shape[:2] != self.orig_hw:
            raise UsageError(
                f"image is {img.shape[1]}x{img.shape[0]} but this letterbox is for "
                f"{self.orig_hw[1]}x{self.orig_hw[0]} (W x H)"
            )
        if self.resized_hw != self.orig_hw:
            img = cv2.resize(img, self.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
        if self.padded_hw != self.resized_hw:
            img = cv2.copyMakeBorder(
                img,
                self.pad_top,
                self.pad_bottom,
                self.pad_left,
                self.pad_right,
                cv2.BORDER_CONSTANT,
                value=(PAD_VALUE,) * 3,
            )
        hp, wp = self.padded_hw
        chw = np.stack(cv2.split(img)[::-1])  # uint8 [3, Hp, Wp], RGB
        return cv2.LUT(chw.reshape(3 * hp, wp), _UNIT_LUT).reshape(3, hp, wp)

    def to_original(self, boxes: Boxes, clip: bool = True) -> Boxes:
        """Map boxes from network-input pixels to original-image pixels.

        Args:
            boxes: ``[N, 4+]`` Tensor or ndarray; columns 0-3 are xyxy in padded-input pixels, further columns
                (score, class) are passed through.
            clip: clip to the original image (x to [0, W], y to [0, H]). The original does not clip.

        Returns:
            A new array of the same type: ``(xyxy - (left, top, left, top)) / scale``, then clipped.
        """
        out = _copy(boxes)
        xyxy = (out[..., :4] - self._offset(out)) / self.scale
        out[..., :4] = clip_boxes(xyxy, self.orig_hw) if clip else xyxy
        return out

    def to_input(self, boxes: Boxes) -> Boxes:
        """Inverse of :meth:`to_original`, no clipping: ``[N, 4+]`` xyxy original -> padded-input pixels."""
        out = _copy(boxes)
        out[..., :4] = out[..., :4] * self.scale + self._offset(out)
        return out

    def _offset(self, like: Boxes) -> Boxes:
        offset = [self.pad_left, self.pad_top, self.pad_left, self.pad_top]
        if isinstance(like, Tensor):
            return torch.tensor(offset, dtype=like.dtype, device=like.device)
        return np.array(offset, dtype=like.dtype)


def _copy(boxes: Boxes) -> Boxes:
    """A floating copy (float32 for integer input) of a Tensor or ndarray."""
    if isinstance(boxes, Tensor):
        return boxes.clone() if boxes.is_floating_point() else boxes.float()
    return boxes.copy() if np.issubdtype(boxes.dtype, np.floating) else boxes.astype(np.float32)
