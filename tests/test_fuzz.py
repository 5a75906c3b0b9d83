"""Hypothesis properties: the key=value parser never crashes and round-trips values, the letterbox maps
boxes back inside the image, and the weights reader refuses or loads mutated checkpoints, never anything
else and never hanging."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formula import FIXTURES
from yolonas_cli.cfg import PredictArgs
from yolonas_cli.cli.parse import parse_args
from yolonas_cli.core.checks import format_value
from yolonas_cli.core.errors import UsageError, WeightsError
from yolonas_cli.engine.letterbox import Letterbox
from yolonas_cli.weights.checkpoint import read_checkpoint

KEYS = ["conf", "iou", "imgsz", "classes", "save_txt", "name", "source", "max_det", "batch", "device", "confx", ""]
token_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
tokens = st.lists(
    st.one_of(
        token_text,
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), token_text),
        st.sampled_from(["=", "[", "]", "[640,", "480]", "save_txt", "--conf", "k = v", "none", "TRUE"]),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(tokens)
def test_parser_never_crashes_on_any_tokens(words):
    try:
        args = parse_args("predict", words)
    except UsageError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(args, PredictArgs)


@settings(max_examples=200, deadline=None)
@given(
    conf=st.floats(0, 1, allow_nan=False),
    max_det=st.integers(1, 10_000),
    classes=st.lists(st.integers(0, 1000), min_size=1, max_size=5),
    size=st.integers(1, 80).map(lambda n: n * 32),
    flag=st.booleans(),
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True),
)
def test_parser_round_trips_values(conf, max_det, classes, size, flag, name):
    line = [
        f"conf={format_value(conf)}",
        f"max_det={max_det}",
        f"classes={format_value(classes)}",
        f"imgsz={size}",
        f"save_txt={format_value(flag)}",
        f"name={name}",
    ]
    args = parse_args("predict", line)
    expected_name = None if name.lower() == "none" else name
    assert (args.conf, args.max_det, args.classes, args.imgsz, args.save_txt, args.name) == (
        conf,
        max_det,
        classes,
        size,
        flag,
        expected_name,
    )


@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 4000),
    w=st.integers(1, 4000),
    imgsz=st.tuples(st.integers(1, 40), st.integers(1, 40)).map(lambda t: (t[0] * 32, t[1] * 32)),
    rect=st.booleans(),
    box=st.tuples(*[st.floats(0, 1)] * 4),
)
def test_letterbox_maps_boxes_back_inside_the_image(h, w, imgsz, rect, box):
    lb = Letterbox.for_image((h, w), imgsz, rect=rect)
    ph, pw = lb.padded_hw
    assert ph % 32 == 0 and pw % 32 == 0 and lb.resized_hw[0] <= ph and lb.resized_hw[1] <= pw
    x1, x2 = sorted((box[0] * pw, box[2] * pw))
    y1, y2 = sorted((box[1] * ph, box[3] * ph))
    mapped = np.asarray(lb.to_original(np.array([[x1, y1, x2, y2]], np.float32)))
    assert (mapped[:, [0, 2]] >= 0).all() and (mapped[:, [0, 2]] <= w).all()
    assert (mapped[:, [1, 3]] >= 0).all() and (mapped[:, [1, 3]] <= h).all()
    inside = np.array([[0.25 * w, 0.25 * h, 0.75 * w, 0.75 * h]], np.float32)
    back = np.asarray(lb.to_original(np.asarray(lb.to_input(inside), np.float32), clip=False))
    assert np.allclose(back, inside, atol=max(1e-3, 1e-5 * max(h, w)))


VALID = (FIXTURES / "yolo_nas_tiny_sg_checkpoint.pth").read_bytes()


def storage_bytes_needed(tensor: torch.Tensor) -> int:
    """Bytes of its storage a tensor's view reaches: (offset + the farthest element + 1) * element size."""
    if tensor.numel() == 0:
        return 0
    farthest = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return (tensor.storage_offset() + farthest + 1) * tensor.element_size()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.integers(0, len(VALID) - 1)),
)
def test_mutated_checkpoints_are_refused_or_loaded_never_crash_or_hang(tmp_path_factory, edits, cut):
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    if cut is not None:
        data = data[:cut]
    path = Path(tmp_path_factory.mktemp("mutated")) / "weights.pth"
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    try:
        checkpoint = read_checkpoint(path)
    except WeightsError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert len(checkpoint.state_dict) > 0
        for key, tensor in checkpoint.state_dict.items():
            assert isinstance(key, str) and isinstance(tensor, torch.Tensor), key
            assert storage_bytes_needed(tensor) <= tensor.untyped_storage().nbytes(), key  # within its storage
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("size", [0, 1, 7, 100])
def test_tiny_prefixes_of_a_checkpoint_are_refused(tmp_path, size):
    path = tmp_path / "w.pth"
    path.write_bytes(VALID[:size])
    with pytest.raises(WeightsError, match=r"w\.pth"):
        read_checkpoint(path)
