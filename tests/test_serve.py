"""`yolo-nas serve` on loopback: responses equal `predict`, concurrent requests are batched, a bounded load test
(8 clients x 50 requests) with zero errors, every bad request a 4xx JSON error while the server keeps serving,
and a graceful stop that answers the request in flight.

The server runs in a child process (`servers.py`) with the tiny fixture model at imgsz=160 on the bundled
photos, where the model gives 85, 0, 16 and 0 detections: plenty to compare.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from servers import multipart, post, request, running_server, start_server, stop_server
from yolonas_cli import NAS
from yolonas_cli.core import console
from yolonas_cli.data.sinks import json_entry
from yolonas_cli.data.sources import default_source

PHOTOS = sorted(p for p in default_source().iterdir() if p.suffix in (".png", ".jpg"))
IMGSZ = 160
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}
# Batching changes which images share a model call, and oneDNN's float32 rounding with it. Measured on this
# model and these photos over random batches of 2-8 (scratch script, 12 batches): the same detections, boxes
# within 2.1e-4 px and confidences within 3.6e-6 of batch size 1. The JSON rounds boxes to 3 decimals and
# confidences to 5, which adds up to 1e-3 px and 1e-5: hence these bounds for batched answers.
BATCHED_BOX_PX = 2e-3
BATCHED_CONF = 2e-5


def server_args(checkpoint: Path, *extra: str) -> list[str]:
    return [f"model={checkpoint}", f"imgsz={IMGSZ}", "port=0", "device=cpu", *extra]


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path):
    with running_server(
        *server_args(tiny_checkpoint, "batch=4", "max_wait_ms=20", "max_body_mb=2", "timeout=5")
    ) as running:
        yield running


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path) -> dict[tuple[str, float], dict[str, Any]]:
    """predict's predictions.json entry of each photo, at conf 0.25 and 0.4 (path reduced to the file name)."""
    model = NAS(tiny_checkpoint)
    entries = {}
    for conf in (0.25, 0.4):
        with console.verbosity(False):
            results = model.predict([str(p) for p in PHOTOS], imgsz=IMGSZ, conf=conf, device="cpu")
        for result in results:
            entry = json_entry(result)
            entries[Path(entry["path"]).name, conf] = {**entry, "path": Path(entry["path"]).name}
    return entries


def body_of(photo: Path) -> tuple[bytes, str]:
    return photo.read_bytes(), CONTENT_TYPES[photo.suffix]


def assert_close(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same image, detections, classes and order; boxes and confidences within the batching bounds."""
    assert (answer["path"], answer["height"], answer["width"]) == (
        expected["path"],
        expected["height"],
        expected["width"],
    )
    got, want = answer["detections"], expected["detections"]
    assert [d["class"] for d in got] == [d["class"] for d in want]
    assert [d["name"] for d in got] == [d["name"] for d in want]
    if want:
        assert np.abs(np.array([d["box"] for d in got]) - [d["box"] for d in want]).max() <= BATCHED_BOX_PX
        assert np.abs(np.array([d["confidence"] for d in got]) - [d["confidence"] for d in want]).max() <= BATCHED_CONF


# ---------------------------------------------------------------------------------------- answers


def test_raw_body_answers_equal_predict(server, reference):
    """One request at a time (batches of one, as predict runs): the very same JSON as predictions.json."""
    assert sum(len(e["detections"]) for e in reference.values()) > 100  # something to compare
    for photo in PHOTOS:
        status, headers, body = post(f"{server.url}/predict", *body_of(photo))
        assert status == 200, body
        assert headers["x-batch-size"] == "1"
        assert body == [{**reference[photo.name, 0.25], "path": "image0"}]


def test_multipart_with_settings_equals_predict_with_them(server, reference):
    files = [(p.name, p.read_bytes()) for p in PHOTOS[:2]]
    data, content_type = multipart(files, {"conf": "0.4"})
    status, headers, body = post(f"{server.url}/predict", data, content_type)
    assert status == 200, body
    assert [entry["path"] for entry in body] == [p.name for p in PHOTOS[:2]]
    for entry in body:  # the two images of one request run together
        assert_close(entry, reference[entry["path"], 0.4])
    assert headers["x-batch-size"] == "2"
    status, _, body = post(f"{server.url}/predict?classes=0,2&max_det=3", *body_of(PHOTOS[0]))
    assert status == 200
    wanted = [d for d in reference[PHOTOS[0].name, 0.25]["detections"] if d["class"] in (0, 2)][:3]
    assert body[0]["detections"] == wanted


def test_health_info_and_openapi(server):
    status, _, body = request(f"{server.url}/health")
    assert (status, body) == (200, {"status": "ok"})
    status, _, info = request(f"{server.url}/info")
    assert status == 200
    assert info["model"].endswith(".pth") and info["classes"]["0"] == "person"
    assert info["defaults"]["imgsz"] == [IMGSZ, IMGSZ] and info["batching"]["batch"] == 4
    status, _, schema = request(f"{server.url}/openapi.json")
    assert status == 200 and "/predict" in schema["paths"]
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "multipart/form-data"} <= set(body)


# ---------------------------------------------------------------------------------------- load


def test_load_8_clients_50_requests_each_batched_without_errors(server, reference):
    """8 clients on keep-alive connections send 50 photos each: every answer right, none failed, and model
    calls ran several images at once. Prints p50/p99 latency and the throughput."""
    clients, per_client = 8, 50
    _, _, before = request(f"{server.url}/info")

    def client(index: int) -> list[tuple[float, int, int, Any, str]]:
        host, port = server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        out = []
        try:
            for i in range(per_client):
                photo = PHOTOS[(index + i) % len(PHOTOS)]
                started = time.perf_counter()
                status, headers, body = post(f"{server.url}/predict", *body_of(photo), connection=conn)
                size = int(headers.get("x-batch-size", 0))
                out.append((time.perf_counter() - started, status, size, body, photo.name))
        finally:
            conn.close()
        return out

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = [a for part in pool.map(client, range(clients)) for a in part]
    seconds = time.perf_counter() - started
    _, _, after = request(f"{server.url}/info")

    assert len(answers) == clients * per_client
    errors = [(status, body) for _, status, _, body, _ in answers if status != 200]
    assert not errors, errors[:3]
    for _, _, _, body, name in answers:
        assert_close({**body[0], "path": name}, reference[name, 0.25])
    latencies = sorted(seconds_ for seconds_, *_ in answers)
    sizes = [size for _, _, size, _, _ in answers]
    images = after["batching"]["images"] - before["batching"]["images"]
    calls = after["batching"]["batches"] - before["batching"]["batches"]
    assert images == clients * per_client
    assert max(sizes) > 1 and calls < images  # batching happened
    p50 = statistics.median(latencies) * 1e3
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1e3
    print(
        f"\nserve load: {len(answers)} requests from {clients} clients in {seconds:.2f} s = "
        f"{len(answers) / seconds:.1f} requests/s; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"{calls} model calls for {images} images (mean batch {images / calls:.2f}, largest {max(sizes)}); "
        f"batch sizes {after['batching']['batch_sizes']}",
        file=sys.stderr,
    )


# ---------------------------------------------------------------------------------------- bad requests


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (signature, IHDR, one empty IDAT, IEND): tiny on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bad_requests() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    """(name, path, body, headers, expected status, a word of the error) for each kind of bad request."""
    jpeg = PHOTOS[-1].read_bytes()
    png = PHOTOS[0].read_bytes()
    broken_form = b"--x\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\nabc"
    no_file, no_file_type = multipart([], {"conf": "0.3"})
    return [
        ("not an image", "/predict", b"hello, this is text", {"Content-Type": "image/jpeg"}, 415, "not an image"),
        ("truncated JPEG", "/predict", jpeg[: len(jpeg) // 2], {"Content-Type": "image/jpeg"}, 422, "truncated"),
        ("truncated PNG", "/predict", png[: len(png) // 2], {"Content-Type": "image/png"}, 422, "truncated"),
        ("20000x20000 PNG", "/predict", png_header(20000, 20000), {"Content-Type": "image/png"}, 413, "pixels"),
        ("20000x20000 JPEG", "/predict", jpeg_claiming(20000, 20000), {"Content-Type": "image/jpeg"}, 413, "pixels"),
        ("8000x8000 PNG", "/predict", png_header(8000, 8000), {"Content-Type": "image/png"}, 413, "over the limit of"),
        ("wrong content type", "/predict", jpeg, {"Content-Type": "text/plain"}, 415, "Content-Type"),
        ("JSON body", "/predict", b'{"source": "/x"}', {"Content-Type": "application/json"}, 415, "not accepted"),
        ("huge body", "/predict", b"\xff\xd8\xff" + bytes(3_000_000), {"Content-Type": "image/jpeg"}, 413, "limit"),
        ("empty body", "/predict", b"", {"Content-Type": "image/jpeg"}, 400, "empty"),
        ("form without a file", "/predict", no_file, {"Content-Type": no_file_type}, 400, "no file"),
        ("broken form", "/predict", broken_form, {"Content-Type": "multipart/form-data; boundary=x"}, 400, "multipart"),
        ("bad conf", "/predict?conf=2", jpeg, {"Content-Type": "image/jpeg"}, 422, "conf=2"),
        ("unknown setting", "/predict?source=/etc/passwd", jpeg, {"Content-Type": "image/jpeg"}, 422, "source"),
        ("huge imgsz", "/predict?imgsz=20000", jpeg, {"Content-Type": "image/jpeg"}, 422, "imgsz"),
    ]


@pytest.mark.parametrize("case", bad_requests(), ids=lambda case: case[0])
def test_each_bad_request_gets_a_4xx_json_error_and_the_server_keeps_serving(server, reference, case):
    _, path, body, headers, expected, word = case
    status, response_headers, answer = request(f"{server.url}{path}", "POST", body, headers)
    assert status == expected, answer
    assert response_headers["content-type"] == "application/json"
    assert answer["status"] == expected and word in answer["error"] and "\n" not in answer["error"]
    status, _, answer = post(f"{server.url}/predict", *body_of(PHOTOS[-1]))
    assert status == 200 and answer == [{**reference[PHOTOS[-1].name, 0.25], "path": "image0"}]


def test_chunked_body_over_the_limit_is_refused_while_streaming(server):
    """No Content-Length to check first: the body is counted as it arrives."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        chunks = (bytes(500_000) for _ in range(6))  # 3 MB > max_body_mb=2
        conn.request("POST", "/predict", body=chunks, headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_unknown_route_and_method_are_json_errors(server):
    assert request(f"{server.url}/nope")[::2] == (404, {"error": "Not Found", "status": 404})
    status, _, body = request(f"{server.url}/predict")
    assert status == 405 and body["status"] == 405


def test_a_body_that_stops_arriving_times_out_with_408(server):
    """Content-Length promises 1000 bytes, 10 come: answered 408 after the 5 s timeout."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "image/jpeg")
        conn.putheader("Content-Length", "1000")
        conn.endheaders(b"\xff\xd8\xff" + bytes(7))
        started = time.monotonic()
        response = conn.getresponse()
        assert response.status == 408 and json.loads(response.read())["status"] == 408
        assert 4 <= time.monotonic() - started <= 20
    finally:
        conn.close()


def test_uploaded_file_names_are_only_echoed(server, tmp_path):
    data, content_type = multipart([("../../" + str(tmp_path / "x.jpg"), PHOTOS[-1].read_bytes())])
    status, _, body = post(f"{server.url}/predict", data, content_type)
    assert status == 200 and body[0]["path"] == "x.jpg"
    assert not (tmp_path / "x.jpg").exists()


# ---------------------------------------------------------------------------------------- shutdown


def test_sigterm_answers_the_request_in_flight_then_exits_0(tiny_checkpoint, reference):
    """The request waits 1.5 s in the batcher for company; SIGTERM arrives meanwhile: it is still answered,
    right, and the server then exits with code 0 and accepts nothing more."""
    server = start_server(*server_args(tiny_checkpoint, "batch=8", "max_wait_ms=1500"))
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, f"{server.url}/predict", *body_of(PHOTOS[0]))
            deadline = time.monotonic() + 30
            while request(f"{server.url}/info")[2]["batching"]["in_flight"] == 0:  # until it waits in the batcher
                assert time.monotonic() < deadline and not pending.done()
                time.sleep(0.05)
            code = stop_server(server, timeout=60)
            status, _, body = pending.result(timeout=60)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert code == 0, server.output()
    assert status == 200 and body == [{**reference[PHOTOS[0].name, 0.25], "path": "image0"}]
    assert "stopped" in server.output()
    with pytest.raises(OSError):
        request(f"{server.url}/health", timeout=5)


def test_missing_extra_is_named(monkeypatch):
    from yolonas_cli.core.errors import MissingExtraError
    from yolonas_cli.modes.serve.settings import require_serve_extra

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'yolo-nas\[serve\]'"):
        require_serve_extra()


def test_a_busy_port_is_a_usage_error(tiny_checkpoint, server):
    port = server.url.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "yolonas_cli", "serve", f"model={tiny_checkpoint}", f"port={port}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("Error: cannot listen on 127.0.0.1:") and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------- the parts


def jpegs() -> dict[str, bytes]:
    """The same photo as baseline, progressive and restart-marker JPEGs."""
    image = cv2.imread(str(PHOTOS[-1]))
    flags = {
        "baseline": [],
        "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
        "restart markers": [cv2.IMWRITE_JPEG_RST_INTERVAL, 4],
    }
    return {name: cv2.imencode(".jpg", image, f)[1].tobytes() for name, f in flags.items()}


@pytest.mark.parametrize("kind", ["baseline", "progressive", "restart markers"])
def test_a_jpeg_is_complete_only_up_to_its_end_marker(kind):
    from yolonas_cli.modes.serve.images import jpeg_is_complete

    data = jpegs()[kind]
    assert data.count(b"\xff\xda") >= 1 and data.endswith(b"\xff\xd9")
    assert jpeg_is_complete(data)
    assert jpeg_is_complete(data + b"camera trailer \xff\xda\x00\x04 after the end")
    for cut in (len(data) // 3, len(data) - 300, len(data) - 2, len(data) - 1):
        assert not jpeg_is_complete(data[:cut]), cut
    assert not jpeg_is_complete(b"\x89PNG\r\n\x1a\n")


def test_request_settings_are_checked_like_the_command_line():
    from yolonas_cli.engine.engine import EngineSettings
    from yolonas_cli.modes.serve.inputs import Limits, request_settings
    from yolonas_cli.modes.serve.problems import HTTPProblem

    limits = Limits(max_body_bytes=1000, max_pixels=1000, timeout_s=1.0, max_imgsz=1280)
    defaults = EngineSettings(imgsz=(640, 640), conf=0.25, batch=8)
    got = request_settings(defaults, {"conf": "0.5", "classes": "[0,2]"}, {"imgsz": "640,480", "max_det": "7"}, limits)
    assert got == EngineSettings(imgsz=(640, 480), conf=0.5, classes=(0, 2), max_det=7, batch=8)
    assert request_settings(defaults, {"classes": "3", "imgsz": "100"}, {}, limits).classes == (3,)
    assert request_settings(defaults, {"imgsz": "100"}, {}, limits).imgsz == (128, 128)  # rounded up to 32
    for query, fields, word in [
        ({"conf": "abc"}, {}, "conf=abc is not a number"),
        ({"conf": "nan"}, {}, "out of range"),
        ({"max_det": "1.5"}, {}, "not a whole number"),
        ({"classes": "-1"}, {}, "classes"),
        ({"imgsz": "1312"}, {}, "over the limit of 1280"),
        ({"iou": "0.5"}, {"iou": "0.6"}, "given both"),
        ({"agnostic_nms": "true"}, {}, "not a setting"),
    ]:
        with pytest.raises(HTTPProblem, match=word) as caught:
            request_settings(defaults, query, fields, limits)
        assert caught.value.status == 422


def test_requests_with_other_settings_run_in_separate_model_calls(tiny_checkpoint):
    from yolonas_cli.engine.engine import EngineSettings
    from yolonas_cli.modes.serve.batcher import run_requests

    engine = NAS(tiny_checkpoint).make_engine(EngineSettings(imgsz=(IMGSZ, IMGSZ)), "cpu")
    image = cv2.imread(str(PHOTOS[0]))  # 85 detections at conf 0.25
    strict = EngineSettings(imgsz=(IMGSZ, IMGSZ), conf=0.4)
    outcomes = run_requests(engine, [image, image, image], [engine.settings, strict, engine.settings])
    assert [o.batch_size for o in outcomes] == [2, 1, 2]
    lone = engine.with_settings(strict).run_batch([image])[0][0]
    assert np.array_equal(outcomes[1].detections, lone)  # a call of its own: exactly the lone run
    assert 0 < len(lone) < len(outcomes[0].detections) and (lone[:, 4] > 0.4).all()
    assert np.array_equal(outcomes[0].detections, outcomes[2].detections)
