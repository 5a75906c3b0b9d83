"""Letterbox: the original's sizes, pixels equal to a plain step-by-step reference, boxes mapped back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from yolonas_cli.core.errors import UsageError
from yolonas_cli.engine.letterbox import Letterbox, resize_target

# (W, H) photo -> imgsz -> rect -> (resized_hw, padded_hw, pad_top, pad_left); worked out by hand from
# r = min(t / H, t / W) with t = 636 (imgsz 640) or 318 (imgsz 320), round(), centre padding.
SIZES = {
    (512, 512): {
        (640, False): ((636, 636), (640, 640), 2, 2),
        (640, True): ((636, 636), (640, 640), 2, 2),
        (320, False): ((318, 318), (320, 320), 1, 1),
        (320, True): ((318, 318), (320, 320), 1, 1),
    },
    (451, 300): {  # 300 * 636 / 451 = 423.06; 300 * 318 / 451 = 211.53
        (640, False): ((423, 636), (640, 640), 108, 2),
        (640, True): ((423, 636), (448, 640), 12, 2),
        (320, False): ((212, 318), (320, 320), 54, 1),
        (320, True): ((212, 318), (224, 320), 6, 1),
    },
    (600, 400): {  # r = 1.06 / 0.53
        (640, False): ((424, 636), (640, 640), 108, 2),
        (640, True): ((424, 636), (448, 640), 12, 2),
        (320, False): ((212, 318), (320, 320), 54, 1),
        (320, True): ((212, 318), (224, 320), 6, 1),
    },
    (640, 427): {  # 427 * 0.99375 = 424.33; 427 * 0.496875 = 212.17
        (640, False): ((424, 636), (640, 640), 108, 2),
        (640, True): ((424, 636), (448, 640), 12, 2),
        (320, False): ((212, 318), (320, 320), 54, 1),
        (320, True): ((212, 318), (224, 320), 6, 1),
    },
}
CASES = [(wh, imgsz, rect) for wh, table in SIZES.items() for imgsz, rect in table]


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A BGR uint8 test image: smooth gradients plus noise, so resizing has something to interpolate."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def reference_apply(bgr: np.ndarray, imgsz: int, rect: bool) -> np.ndarray:
    """The original's steps, one at a time: RGB, resize to the rounded size, np.pad 114, float64 / 255."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    target = imgsz * 636 // 640  # exact for 640 and 320
    r = min(target / h, target / w)
    if r != 1:
        rgb = cv2.resize(rgb, (round(w * r), round(h * r)), interpolation=cv2.INTER_LINEAR)
    h2, w2 = rgb.shape[:2]
    hp, wp = (-(-h2 // 32) * 32, -(-w2 // 32) * 32) if rect else (imgsz, imgsz)
    top, left = (hp - h2) // 2, (wp - w2) // 2
    padded = np.pad(rgb, ((top, hp - h2 - top), (left, wp - w2 - left), (0, 0)), constant_values=114)
    return (padded / 255.0).astype(np.float32).transpose(2, 0, 1)


@pytest.mark.parametrize(("wh", "imgsz", "rect"), CASES)
def test_sizes(wh: tuple[int, int], imgsz: int, rect: bool) -> None:
    w, h = wh
    lb = Letterbox.for_image((h, w), imgsz, rect=rect)
    assert (lb.resized_hw, lb.padded_hw, lb.pad_top, lb.pad_left) == SIZES[wh][imgsz, rect]
    assert lb.orig_hw == (h, w)
    assert lb.scale == min(resize_target(imgsz) / h, resize_target(imgsz) / w)


def test_resize_target_keeps_636_over_640() -> None:
    assert [resize_target(s) for s in (640, 320, 1280, 416)] == [636, 318, 1272, 413]


def test_no_resize_when_longest_side_fits() -> None:
    lb = Letterbox.for_image((400, 636), 640)
    assert (lb.scale, lb.resized_hw, lb.pad_top, lb.pad_left) == (1.0, (400, 636), 120, 2)


def test_non_square_imgsz_and_tiny_side() -> None:
    lb = Letterbox.for_image((480, 640), (480, 640))  # targets 477 x 636
    assert lb.scale == min(477 / 480, 636 / 640) and lb.resized_hw == (477, 636)
    assert Letterbox.for_image((1, 5000), 640).resized_hw == (1, 636)  # would round to 0


@pytest.mark.parametrize(("wh", "imgsz", "rect"), CASES)
def test_apply_equals_step_by_step_reference(wh: tuple[int, int], imgsz: int, rect: bool) -> None:
    w, h = wh
    img = photo(w, h)
    lb = Letterbox.for_image((h, w), imgsz, rect=rect)
    out = lb.apply(img)
    assert out.dtype == np.float32 and out.shape == (3, *lb.padded_hw) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, reference_apply(img, imgsz, rect))


def test_apply_without_resize_and_padding_values() -> None:
    img = photo(636, 400)
    lb = Letterbox.for_image((400, 636), 640)
    out = lb.apply(img)
    np.testing.assert_array_equal(out, reference_apply(img, 640, False))
    assert np.all(out[:, : lb.pad_top] == np.float32(114 / 255))


def test_other_image_layouts() -> None:
    bgr = photo(64, 48)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    lb = Letterbox.for_image((48, 64), 320)
    np.testing.assert_array_equal(lb.apply(gray), lb.apply(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)))
    np.testing.assert_array_equal(lb.apply(gray[..., None]), lb.apply(gray))
    bgra = np.concatenate([bgr, np.full((48, 64, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(lb.apply(bgra), lb.apply(bgr))
    wide = bgr.astype(np.uint16) * 256 + 200  # high byte = the 8-bit value
    np.testing.assert_array_equal(lb.apply(wide), lb.apply(bgr))
    np.testing.assert_array_equal(lb.apply(bgr[:, ::-1][:, ::-1]), lb.apply(bgr))  # non-contiguous view


def test_bad_images_raise() -> None:
    lb = Letterbox.for_image((48, 64), 320)
    with pytest.raises(UsageError, match="dtype float32"):
        lb.apply(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(UsageError, match="shape"):
        lb.apply(np.zeros((48, 64, 2), np.uint8))
    with pytest.raises(UsageError, match="64x48"):
        lb.apply(np.zeros((64, 48, 3), np.uint8))
    with pytest.raises(UsageError):
        Letterbox.for_image((0, 10), 640)


def test_float32_division_is_exact_for_all_uint8_values() -> None:
    x = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(x.astype(np.float32) / np.float32(255), (x / 255.0).astype(np.float32))


@pytest.mark.parametrize(("wh", "imgsz", "rect"), CASES)
def test_content_corners_map_to_image_corners(wh: tuple[int, int], imgsz: int, rect: bool) -> None:
    w, h = wh
    lb = Letterbox.for_image((h, w), imgsz, rect=rect)
    top, left = lb.pad_top, lb.pad_left
    content = torch.tensor([[left, top, left + lb.resized_hw[1], top + lb.resized_hw[0]]], dtype=torch.float32)
    tol = 0.5 / lb.scale + 1e-3  # the resized size was rounded to whole pixels
    for clip in (False, True):
        back = lb.to_original(content, clip=clip)[0].tolist()
        np.testing.assert_allclose(back, [0, 0, w, h], atol=tol)
    assert lb.to_original(content)[0, 2] <= w and lb.to_original(content)[0, 3] <= h


def test_round_trip_and_clipping() -> None:
    rng = np.random.default_rng(0)
    lb = Letterbox.for_image((427, 640), 640)
    xy = rng.uniform(0, 600, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 200, (50, 2))], axis=1).astype(np.float32)
    extra = [rng.uniform(0, 1, (50, 1)), rng.integers(0, 80, (50, 1))]  # score, class
    rows = np.concatenate([boxes, *extra], axis=1).astype(np.float32)
    back = lb.to_original(lb.to_input(rows), clip=False)
    np.testing.assert_allclose(back, rows, atol=1e-3)
    np.testing.assert_array_equal(back[:, 4:], rows[:, 4:])  # score and class pass through
    clipped = lb.to_original(lb.to_input(torch.from_numpy(rows)))
    assert isinstance(clipped, torch.Tensor)
    assert clipped[:, [0, 2]].max() <= 640 and clipped[:, [1, 3]].max() <= 427 and clipped[:, :4].min() >= 0
    assert torch.equal(clipped, torch.from_numpy(lb.to_original(lb.to_input(rows))))


def test_to_original_is_the_original_arithmetic() -> None:
    lb = Letterbox.for_image((427, 640), 640)  # r = 0.99375, top 108, left 2
    box = np.array([[2.0, 108.0, 320.0, 300.0]], np.float32)
    expected = (box - np.float32([2, 108, 2, 108])) / np.float32(0.99375)
    np.testing.assert_array_equal(lb.to_original(box, clip=False), expected)
    assert lb.to_original(box.astype(np.int64)).dtype == np.float32
    assert lb.to_original(np.zeros((0, 6), np.float32)).shape == (0, 6)
