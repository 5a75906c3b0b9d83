"""Uploaded image bytes to a BGR array, checked before anything large is allocated.

The header is read first (Pillow reads it without decoding the pixels): the format must be one OpenCV decodes
(JPEG, PNG, BMP, WebP, TIFF) and width x height at most `max_pixels`, so a 20000x20000 image costs a few bytes
of header, not 1.2 GB. A JPEG must reach its end marker and a PNG its last chunk (a truncated upload is refused
rather than half-grey). The pixels are then decoded by OpenCV exactly as `predict` decodes a file
(`data.frames.decode_image`), so a served image gives predict's detections.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from yolonas_cli.data.frames import decode_image
from yolonas_cli.modes.serve.problems import HTTPProblem

FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
_SOS, _EOI = 0xDA, 0xD9


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The decoded image (as stored: BGR, grey, BGRA or 16-bit, as predict reads it), or HTTPProblem: 415 for
    a format that is not an image we read, 413 for more than `max_pixels` pixels, 422 for a truncated or
    undecodable one."""
    image_format, (width, height) = _header(data, name)
    if width * height > max_pixels:
        raise HTTPProblem(
            413, f"{name} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}: send less"
        )
    if image_format == "JPEG" and not jpeg_is_complete(data):
        raise HTTPProblem(422, f"{name} is a truncated JPEG (no end-of-image marker): send the whole file")
    if image_format == "PNG":
        _verify_png(data, name)
    image = decode_image(data, jpeg=image_format == "JPEG")
    if image is None or image.size == 0:
        raise HTTPProblem(422, f"{name} cannot be decoded as a {image_format} image: send a valid image file")
    return image


def _header(data: bytes, name: str) -> tuple[str, tuple[int, int]]:
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns about large images; the pixel cap is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                return str(image.format), (int(image.size[0]), int(image.size[1]))
    except Image.DecompressionBombError:
        raise HTTPProblem(413, f"{name} has far too many pixels: send a smaller image") from None
    except Exception:
        if _has_image_signature(data):
            raise HTTPProblem(422, f"{name} is a truncated or corrupt image: send the whole file") from None
        raise HTTPProblem(
            415, f"{name} is not an image in a supported format ({', '.join(FORMATS)}): send an image file"
        ) from None


def _has_image_signature(data: bytes) -> bool:
    """The first bytes of a JPEG, PNG, BMP, WebP or TIFF file."""
    starts = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*")
    return data.startswith(starts) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _verify_png(data: bytes, name: str) -> None:
    """Every chunk present with its checksum, up to IEND (the pixels are not decompressed)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
            image.verify()
    except Exception:
        raise HTTPProblem(422, f"{name} is a truncated or corrupt PNG: send the whole file") from None


def jpeg_is_complete(data: bytes) -> bool:
    """True when the JPEG's segments and scans can be walked from its start marker to its end marker.

    Segments carry their length; after a start-of-scan the entropy-coded data runs until the next marker
    (0xFF followed by anything but 0x00 stuffing or a restart marker). Data after the end marker (camera
    trailers) is allowed."""
    if data[:2] != b"\xff\xd8":
        return False
    pos, size = 2, len(data)
    for _ in range(size):  # every step moves forward; bounded by the file size
        if pos + 1 >= size or data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            return True
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if pos + 3 >= size:
            return False
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _SOS:
            pos = _end_of_scan(data, pos)
            if pos < 0:
                return False
    return False


def _end_of_scan(data: bytes, pos: int) -> int:
    """The position of the first marker after entropy-coded data starting at `pos` (-1: the data ends first)."""
    size = len(data)
    for _ in range(size):  # every step moves forward
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= size:
            return -1
        following = data[pos + 1]
        if following == 0xFF:  # fill byte before a marker
            pos += 1
        elif following == 0x00 or 0xD0 <= following <= 0xD7:  # stuffed 0xFF, restart marker
            pos += 2
        else:
            return pos
    return -1
