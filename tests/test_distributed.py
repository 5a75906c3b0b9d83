"""The Ray-side pieces that need no cluster: the actor's work on one chunk (run in this process), the rows it
sends back, how actors are sized, how a worker's failure is reported, and the `ray=` values."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolonas_cli.cfg import make_args
from yolonas_cli.core.errors import UsageError, WeightsError, YoloNasError
from yolonas_cli.data.frames import read_image
from yolonas_cli.detector import Detector
from yolonas_cli.distributed.batch import UNREADABLE, ImageWorker, WorkerSpec, remote_image, worker_failure
from yolonas_cli.distributed.cluster import ActorShape, Cluster, actor_shape
from yolonas_cli.distributed.shipping import ShippedModel
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.modes.ray_predict import unique_stems


def shipped_in_place(path: Path) -> ShippedModel:
    """A ShippedModel whose driver file is `path` itself (a worker on this machine uses it; no object store)."""
    data = path.read_bytes()
    return ShippedModel(path.name, str(path), hashlib.sha256(data).hexdigest(), len(data), None)


def test_a_worker_runs_a_chunk_as_the_engine_does(tiny_checkpoint, tmp_path, quiet_console):
    rng = np.random.default_rng(1)
    paths = []
    for i, shape in enumerate([(96, 128, 3), (64, 64), (80, 120, 4)]):  # BGR, grey, BGRA
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, shape, dtype=np.uint8))
        paths.append(str(path))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    paths.insert(1, str(tmp_path / "bad.jpg"))
    settings = EngineSettings(imgsz=(128, 128), conf=0.05, batch=2)
    worker = ImageWorker(WorkerSpec(shipped_in_place(tiny_checkpoint), settings, "cpu"))
    rows = worker({"start": 10, "paths": paths, "tags": ["a", "b", "c", "d"]})

    outcomes = [remote_image(row) for row in rows]
    assert [o.index for o in outcomes] == [10, 11, 12, 13]
    assert outcomes[1].error == UNREADABLE and outcomes[1].detections.shape == (0, 6)
    engine = Detector(tiny_checkpoint).make_engine(settings, "cpu")
    images = [read_image(paths[i]) for i in (0, 2, 3)]
    # the decodable files in batches of 2 of one input shape, as a local run batches them
    expected = [out[0] for out in engine.run_batch(images[:2])] + [engine.run_batch(images[2:])[0][0]]
    for outcome, image, det in zip([outcomes[0], outcomes[2], outcomes[3]], images, expected):
        assert outcome.error == "" and outcome.orig_hw == image.shape[:2] and outcome.input_hw == (128, 128)
        assert outcome.detections.dtype == np.float32 and len(det) > 0
        assert np.array_equal(outcome.detections, det)
    assert len({o.worker for o in outcomes}) == 1 and outcomes[0].worker.endswith(f":{os.getpid()}")


def test_a_worker_decoding_for_val_converts_to_bgr_uint8(tiny_checkpoint, tmp_path, quiet_console):
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16))
    spec = WorkerSpec(shipped_in_place(tiny_checkpoint), EngineSettings(imgsz=(64, 64)), "cpu", bgr_uint8=True)
    seen = []
    worker = ImageWorker(spec)
    worker.spec = WorkerSpec(spec.model, spec.settings, "cpu", bgr_uint8=True, after_image=lambda r, t: seen.append(r))
    (row,) = worker({"start": 0, "paths": [str(path)], "tags": ["t"]})
    assert row["error"] == "" and seen[0].orig_img.dtype == np.uint8 and seen[0].orig_img.shape == (64, 64, 3)


def test_a_worker_refuses_a_model_file_that_does_not_match(tiny_checkpoint, tmp_path, monkeypatch, quiet_console):
    wrong = ShippedModel("tiny.pth", str(tiny_checkpoint), "0" * 64, tiny_checkpoint.stat().st_size, object())
    monkeypatch.setattr(
        "yolonas_cli.distributed.shipping.import_ray", lambda: type("R", (), {"get": staticmethod(lambda ref: b"x")})
    )
    with pytest.raises(WeightsError, match="does not match its sha256"):
        ImageWorker(WorkerSpec(wrong, EngineSettings(), "cpu", weights_dir=str(tmp_path)))


@pytest.mark.parametrize(
    ("cluster", "workers", "device", "expected"),
    [
        (Cluster(2, 0, 2, True), 2, "cpu", ActorShape(2, 1.0, 0.0)),
        (Cluster(2, 0, 2, True), 0, "auto", ActorShape(2, 1.0, 0.0)),  # one per CPU
        (Cluster(16, 0, 8, False), 2, "auto", ActorShape(2, 8.0, 0.0)),  # 8 each, no more than a node
        (Cluster(16, 0, 4, False), 2, "auto", ActorShape(2, 4.0, 0.0)),
        (Cluster(2, 0, 2, True), 4, "cpu", ActorShape(4, 0.5, 0.0)),  # more actors than CPUs
        (Cluster(32, 4, 16, False), 0, "auto", ActorShape(4, 1.0, 1.0)),  # one per GPU
        (Cluster(32, 4, 16, False), 8, "cuda", ActorShape(8, 1.0, 0.5)),
        (Cluster(32, 4, 16, False), 3, "cpu", ActorShape(3, 10.0, 0.0)),  # device=cpu ignores the GPUs
    ],
)
def test_actor_shapes(cluster, workers, device, expected):
    assert actor_shape(cluster, workers, device) == expected


def test_worker_failures_keep_our_message():
    ours = WeightsError("'x.pt' is not a YOLO-NAS checkpoint")

    class RayTaskError(Exception):
        def __init__(self, cause: BaseException):
            super().__init__(f"RayTaskError(WeightsError): ray::MapWorker ... {cause}")
            self.cause = cause

    wrapped = RuntimeError("UserCodeException")
    wrapped.__cause__ = RayTaskError(ours)
    assert worker_failure(wrapped) is ours
    other = worker_failure(RuntimeError("Traceback ...\nValueError: boom"))
    assert isinstance(other, YoloNasError) and str(other) == "a Ray worker failed: RuntimeError: ValueError: boom"


def test_stems_are_unique_in_input_order():
    assert unique_stems(["/a/x.jpg", "/b/x.png", "/a/y.jpg", "/c/x.jpg", "/d/x-2.jpg"]) == [
        "x",
        "x-2",
        "y",
        "x-3",
        "x-2-2",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("auto", "auto"),
        ("LOCAL", "local"),
        ("ray://head:10001", "ray://head:10001"),
        ("10.0.0.1:6379", "10.0.0.1:6379"),
    ],
)
def test_ray_values(value, expected):
    assert make_args("predict", ray=value).ray == expected


@pytest.mark.parametrize("value", ["", "cluster", "ray://head", "head:0", "head:99999", "ray://a b:1", 3, True])
def test_bad_ray_values_are_usage_errors(value):
    with pytest.raises(UsageError, match=r"ray=.* is not valid: use auto, local, or a cluster address"):
        make_args("val", ray=value)


@pytest.mark.parametrize(("value", "ok"), [(0, True), (8000, True), (65535, True), (65536, False), (-1, False)])
def test_serve_ports(value, ok):
    if ok:
        assert make_args("serve", port=value).port == value
    else:
        with pytest.raises(UsageError, match="port="):
            make_args("serve", port=value)


def test_a_missing_listed_file_is_the_same_usage_error_with_ray(tiny_checkpoint, tmp_path, quiet_console):
    from yolonas_cli import NAS

    cv2.imwrite(str(tmp_path / "here.jpg"), np.zeros((32, 32, 3), np.uint8))
    listing = tmp_path / "list.txt"
    listing.write_text("here.jpg\ngone.jpg\n")
    model = NAS(tiny_checkpoint)
    messages = []
    for ray in (None, "local"):  # refused before any cluster starts
        with pytest.raises(UsageError) as caught:
            model.predict(str(listing), ray=ray)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "gone.jpg' does not exist (line 2 of" in messages[0]
