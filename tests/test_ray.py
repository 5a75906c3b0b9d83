"""predict, val and serve on Ray, on the session's local cluster (`conftest.ray_address`: 127.0.0.1, 2 CPUs).

Ray gives each actor `OMP_NUM_THREADS` = its CPUs (1 here, with 2 actors), and oneDNN's float32 rounding
depends on the thread count (tiny at 128 on these images: boxes move by up to ~1e-4 px between 1 and 2
threads), so the local runs compared against run on 1 thread too; then the outputs are identical, byte for
byte.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from servers import post, request, running_server
from test_val import build_dataset
from yolonas_cli import NAS
from yolonas_cli.core import console
from yolonas_cli.core.errors import MissingExtraError, UsageError, WeightsError
from yolonas_cli.data.frames import read_image
from yolonas_cli.data.sinks import json_entry
from yolonas_cli.data.sources import default_source
from yolonas_cli.distributed.batch import WorkerSpec, detect_on_ray
from yolonas_cli.distributed.cluster import ActorShape, import_ray
from yolonas_cli.distributed.shipping import fetch_model, ship_model
from yolonas_cli.engine.engine import EngineSettings
from yolonas_cli.modes.ray_predict import unique_stems

pytest.importorskip("ray", reason="the ray extra needs Python 3.10 or newer (Ray's own requirement)")
pytestmark = [pytest.mark.ray, pytest.mark.slow]
IMGSZ = 128
N_IMAGES = 200


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 small photos of shapes (96x128, JPEG), plus one file that is not an image and one empty file."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(7)
    for i in range(N_IMAGES):
        image = rng.integers(0, 80, (96, 128, 3), dtype=np.uint8)
        for _ in range(2):
            x, y = int(rng.integers(0, 90)), int(rng.integers(0, 60))
            colour = tuple(int(c) for c in rng.integers(100, 255, 3))
            cv2.rectangle(image, (x, y), (x + 30, y + 30), colour, -1)
        cv2.imwrite(str(root / f"img{i:03d}.jpg"), image)
    (root / "img050_broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    (root / "img120_empty.png").write_bytes(b"")
    return root


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_200_images_on_ray_give_the_local_run_outputs(folder, tiny_checkpoint, tmp_path, ray_address, capsys):
    model = NAS(tiny_checkpoint)
    common = dict(imgsz=IMGSZ, save=True, save_txt=True, save_conf=True, save_json=True, device="cpu")
    with one_torch_thread():
        local = model.predict(str(folder), project=str(tmp_path / "local"), name="run", **common)
    remote = model.predict(str(folder), project=str(tmp_path / "ray"), name="run", ray="auto", workers=2, **common)
    printed = capsys.readouterr().err

    assert len(local) == len(remote) == N_IMAGES
    for a, b in zip(local, remote):
        assert (a.path, a.orig_shape) == (b.path, b.orig_shape)
        assert np.array_equal(a.boxes.data, b.boxes.data)
    assert sum(len(r) for r in local) > N_IMAGES  # detections to compare
    local_files, ray_files = tree(tmp_path / "local" / "run"), tree(tmp_path / "ray" / "run")
    assert local_files.keys() == ray_files.keys()
    assert len([name for name in local_files if name.endswith(".jpg")]) == N_IMAGES  # annotated, by the workers
    assert local_files == ray_files  # predictions.json, labels and annotated images, byte for byte
    entries = json.loads(ray_files["predictions.json"])
    assert [e["path"] for e in entries] == [r.path for r in local]  # each image once, in input order
    for name in ("img050_broken.jpg", "img120_empty.png"):  # reported and skipped, as locally
        assert printed.count(f"skipping '{folder / name}'") == 2


def test_an_actor_killed_mid_run_is_replaced_and_every_image_comes_back_once(folder, tiny_checkpoint, ray_address):
    paths = sorted(str(p) for p in folder.glob("img???.jpg"))[:100]
    settings = EngineSettings(imgsz=(IMGSZ, IMGSZ))
    spec = WorkerSpec(ship_model(tiny_checkpoint), settings, "cpu")
    engine = NAS(tiny_checkpoint).make_engine(settings, "cpu")
    with one_torch_thread():
        expected = [engine.run_batch([read_image(p)])[0][0] for p in paths]

    outcomes, killed, killed_at = [], None, 0.0
    for outcome in detect_on_ray(spec, paths, unique_stems(paths), 1, ActorShape(2, 1.0, 0.0)):
        outcomes.append(outcome)
        if killed is None:
            killed, killed_at = int(outcome.worker.rsplit(":", 1)[1]), time.time()
            os.kill(killed, signal.SIGKILL)

    assert killed is not None
    assert [o.index for o in outcomes] == list(range(len(paths)))  # every image, exactly once, in order
    for outcome, want in zip(outcomes, expected):
        assert outcome.error == "" and np.array_equal(outcome.detections, want)
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    workers = Counter(o.worker for o in outcomes)
    restarted = {o.worker for o in outcomes if o.worker_started > killed_at}
    print(f"\nimages per worker: {dict(workers)}; killed pid {killed}; restarted: {restarted}", file=sys.stderr)
    assert restarted  # Ray restarted the killed actor and ran its unfinished blocks there


def test_val_on_ray_gives_the_local_metrics(tiny_checkpoint, tmp_path, ray_address):
    """12 images (one more that is corrupt) in batches of 4: the same metrics and predictions.json."""
    data = build_dataset(tmp_path / "ds")
    model = NAS(tiny_checkpoint)
    common = dict(data=str(data), imgsz=160, batch=4, save_json=True, plots=False, device="cpu", verbose=False)
    with one_torch_thread():
        local = model.val(project=str(tmp_path / "local"), name="run", **common)
    remote = model.val(project=str(tmp_path / "ray"), name="run", ray="auto", workers=2, **common)
    assert remote.results_dict == local.results_dict
    assert (remote.seen, remote.skipped) == (local.seen, local.skipped) == (12, 1)
    assert len(json.loads((tmp_path / "local/run/predictions.json").read_text())) > 12  # detections to compare
    for name in ("predictions.json", "metrics.json"):
        local_file = json.loads((tmp_path / "local" / "run" / name).read_text())
        ray_file = json.loads((tmp_path / "ray" / "run" / name).read_text())
        if name == "metrics.json":  # the speed is the workers', not the local run's
            local_file.pop("speed", None)
            ray_file.pop("speed", None)
        assert ray_file == local_file, name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_replicas_on_ray_answer_as_predict(tiny_checkpoint, ray_address):
    photo = sorted(default_source().glob("*.png"))[0]
    with console.verbosity(False):
        (result,) = NAS(tiny_checkpoint).predict(str(photo), imgsz=160, device="cpu")
    expected = {**json_entry(result), "path": "image0"}
    port = free_port()
    tokens = (f"model={tiny_checkpoint}", "imgsz=160", f"port={port}", f"ray={ray_address}", "replicas=1", "device=cpu")
    with running_server(*tokens, timeout=240) as server:
        status, headers, body = post(f"{server.url}/predict", photo.read_bytes(), "image/png")
        assert status == 200, body
        assert headers["x-batch-size"] == "1"
        (entry,) = body
        assert (entry["path"], entry["height"], entry["width"]) == ("image0", 512, 512)
        assert [d["class"] for d in entry["detections"]] == [d["class"] for d in expected["detections"]]
        # the replica has both CPUs (2 torch threads, as this process): the same floats
        assert entry == expected
        status, _, body = post(f"{server.url}/predict", b"text", "text/plain")
        assert status == 415 and body["status"] == 415
        status, _, info = request(f"{server.url}/info")
        assert status == 200 and info["batching"]["images"] == 1


def test_model_files_are_verified_by_sha256(tiny_checkpoint, tmp_path, ray_address):
    copy = tmp_path / "driver" / "tiny.pth"
    copy.parent.mkdir()
    copy.write_bytes(tiny_checkpoint.read_bytes())
    shipped = ship_model(copy)
    assert fetch_model(shipped, tmp_path / "cache") == copy  # the driver's own file, when a worker sees it
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))  # same size, other bytes: not used
    fetched = fetch_model(shipped, tmp_path / "cache")
    assert fetched == tmp_path / "cache" / "ray" / shipped.sha256 / "tiny.pth"
    assert fetched.read_bytes() == tiny_checkpoint.read_bytes()
    assert fetch_model(shipped, tmp_path / "cache") == fetched  # now from the worker's cache
    wrong = dataclasses.replace(shipped, sha256="0" * 64, path=str(tmp_path / "gone.pth"))
    with pytest.raises(WeightsError, match="does not match its sha256"):
        fetch_model(wrong, tmp_path / "cache")


def test_ray_runs_image_files_only(tmp_path, tiny_checkpoint):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 5.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    with pytest.raises(UsageError, match="ray= runs image files"):
        NAS(tiny_checkpoint).predict(str(video), ray="local", verbose=False)


def test_missing_ray_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'yolo-nas\[ray\]'"):
        import_ray("data")


def test_the_modes_import_neither_ray_nor_the_web_stack():
    heavy = ("ray", "fastapi", "starlette", "uvicorn", "python_multipart")
    code = (
        "import sys, yolonas_cli.api, yolonas_cli.modes.serve, yolonas_cli.modes.ray_predict, "
        f"yolonas_cli.modes.ray_val; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.strip() == "[]", done.stderr
