"""Dataset YAMLs, label files, COCO JSON annotations, category ids and the download of a missing dataset
(from a local HTTP server only)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from httpserver import serve
from yolonas_cli.core.coco import COCO80_NAMES, COCO80_TO_COCO91
from yolonas_cli.core.errors import UsageError, YoloNasError
from yolonas_cli.data.datasets.dataset import image_ids_for, load_dataset
from yolonas_cli.data.datasets.labels import CorruptSample, label_path, read_txt_labels
from yolonas_cli.data.datasets.yaml_spec import (
    DATASETS_DIR_ENV,
    bundled_datasets,
    datasets_dir,
    find_yaml,
    set_datasets_dir,
)
from yolonas_cli.weights import download


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No backoff waits, a datasets directory of our own (conftest keeps the network local)."""
    monkeypatch.setattr(download, "BACKOFF_BASE", 0.0)
    monkeypatch.setenv(DATASETS_DIR_ENV, str(tmp_path / "datasets"))
    set_datasets_dir(None)


def write_yolo_dataset(root: Path, n: int = 3, names: list[str] | None = None) -> Path:
    """`root/images/val/{i}.png` (64x48) with one label each (class i % 2), and `root/data.yaml`."""
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / "images" / "val" / f"{i}.png"), np.full((48, 64, 3), 30 * i, np.uint8))
        (root / "labels" / "val" / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.25 0.5\n")
    spec = {"path": ".", "train": "images/val", "val": "images/val", "names": names or ["a", "b"]}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png_bytes(h: int = 32, w: int = 40) -> bytes:
    return cv2.imencode(".png", np.zeros((h, w, 3), np.uint8))[1].tobytes()


# ---------------------------------------------------------------------------------------- YAML


def test_bundled_yamls_are_found_by_name_and_carry_80_coco_names():
    assert {"coco8", "coco128", "coco"} <= set(bundled_datasets())
    for name in ("coco8", "coco8.yaml", "coco128", "coco"):
        spec = yaml.safe_load(find_yaml(name).read_text())
        assert [spec["names"][i] for i in range(80)] == list(COCO80_NAMES)
        assert spec["download"] and spec["val"]
    coco = yaml.safe_load(find_yaml("coco").read_text())
    assert coco["val"] == "val2017.txt" and coco["annotations"]["val"] == "annotations/instances_val2017.json"


def test_find_yaml_accepts_paths_and_folders_and_rejects_unknown(tmp_path):
    path = write_yolo_dataset(tmp_path / "ds")
    assert find_yaml(path) == path and find_yaml(path.parent) == path
    with pytest.raises(UsageError, match="coco8"):
        find_yaml("no_such_dataset")


def test_names_list_dict_nc_and_mismatch(tmp_path):
    root = tmp_path / "ds"
    write_yolo_dataset(root)
    base = yaml.safe_load((root / "data.yaml").read_text())
    for names, nc, expected in (
        (["a", "b"], None, {0: "a", 1: "b"}),
        ({0: "x", 1: "y"}, 2, {0: "x", 1: "y"}),
        (None, 2, {0: "class_0", 1: "class_1"}),
    ):
        spec = {**base, "names": names, "nc": nc}
        (root / "data.yaml").write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}))
        assert load_dataset(root / "data.yaml").names == expected
    (root / "data.yaml").write_text(yaml.safe_dump({**base, "nc": 3}))
    with pytest.raises(UsageError, match="nc=3"):
        load_dataset(root / "data.yaml")


def test_root_relative_to_yaml_then_datasets_dir(tmp_path, monkeypatch):
    write_yolo_dataset(tmp_path / "datasets" / "mine")
    elsewhere = tmp_path / "yamls" / "mine.yaml"
    elsewhere.parent.mkdir()
    spec = yaml.safe_load((tmp_path / "datasets" / "mine" / "data.yaml").read_text())
    elsewhere.write_text(yaml.safe_dump({**spec, "path": "mine"}))  # not next to the YAML: datasets dir
    ds = load_dataset(elsewhere)
    assert ds.root == tmp_path / "datasets" / "mine" and len(ds) == 3
    assert datasets_dir() == tmp_path / "datasets"
    set_datasets_dir(tmp_path / "other")
    try:
        assert datasets_dir() == tmp_path / "other"
        with pytest.raises(YoloNasError, match="images/val") as err:
            load_dataset(elsewhere)
        assert "\n" not in str(err.value) and DATASETS_DIR_ENV in str(err.value)
    finally:
        set_datasets_dir(None)


def test_missing_split_is_a_usage_error(tmp_path):
    path = write_yolo_dataset(tmp_path / "ds")
    with pytest.raises(UsageError, match="'test'"):
        load_dataset(path, "test")


def test_txt_list_split_with_dot_slash_lines(tmp_path):
    path = write_yolo_dataset(tmp_path / "ds")
    (path.parent / "val.txt").write_text("./images/val/0.png\n./images/val/2.png\n\n")
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "val": "val.txt"}))
    ds = load_dataset(path)
    assert [p.name for p in ds.files] == ["0.png", "2.png"] and ds.image_ids == [0, 2]


# ---------------------------------------------------------------------------------------- labels


def test_label_path_replaces_the_last_images_folder():
    assert label_path(Path("/d/images/x/images/val/a.jpg")) == Path("/d/images/x/labels/val/a.txt")
    assert label_path(Path("/d/pics/a.jpg")) == Path("/d/pics/a.txt")


def test_txt_labels_boxes_polygons_empty_and_malformed(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("1 0.5 0.5 0.5 0.25\n\n0 0.1 0.2 0.3 0.2 0.3 0.4\n")
    lab = read_txt_labels(f, (100, 200), 2)
    assert lab.cls.tolist() == [1, 0]
    assert np.allclose(lab.boxes, [[50, 37.5, 150, 62.5], [20, 20, 60, 40]])
    assert not lab.crowd.any() and np.allclose(lab.area, [2500, 800])
    assert len(read_txt_labels(tmp_path / "missing.txt", (10, 10), 2)) == 0
    f.write_text("")
    assert len(read_txt_labels(f, (10, 10), 2)) == 0
    for bad in ("5 0.5 0.5 0.1 0.1", "0 0.5 0.5", "0 1.5 0.5 0.1 0.1", "x 0.5 0.5 0.1 0.1"):
        f.write_text(bad + "\n")
        with pytest.raises(CorruptSample):
            read_txt_labels(f, (10, 10), 2)


def test_corrupt_image_and_background_image(tmp_path):
    path = write_yolo_dataset(tmp_path / "ds")
    (path.parent / "labels" / "val" / "1.txt").unlink()
    (path.parent / "images" / "val" / "2.png").write_bytes(b"garbage")
    ds = load_dataset(path)
    assert len(ds.load(1).labels) == 0  # background
    with pytest.raises(CorruptSample, match=r"2\.png"):
        ds.load(2)


# ---------------------------------------------------------------------------------------- ids


def test_image_ids_numeric_stems_else_stems_else_relative_paths(tmp_path):
    assert image_ids_for([Path("a/000012.jpg"), Path("a/7.jpg")], tmp_path) == [12, 7]
    assert image_ids_for([Path("a/12.jpg"), Path("a/bus.jpg")], tmp_path) == ["12", "bus"]
    ids = image_ids_for([tmp_path / "x" / "a.jpg", tmp_path / "y" / "a.jpg"], tmp_path)
    assert ids == ["x/a", "y/a"]


def test_category_ids_coco_names_map_to_coco91_else_one_based(tmp_path):
    coco = load_dataset(write_yolo_dataset(tmp_path / "c", names=list(COCO80_NAMES)))
    assert coco.category_ids == list(COCO80_TO_COCO91) and coco.category_ids[11] == 13
    custom = load_dataset(write_yolo_dataset(tmp_path / "d", names=["cat", "dog"]))
    assert custom.category_ids == [1, 2]


def test_coco_json_annotations_are_the_ground_truth(tmp_path):
    path = write_yolo_dataset(tmp_path / "ds", names=["cat", "dog"])
    ann = {
        "images": [
            {"id": 41, "file_name": "0.png", "height": 48, "width": 64},
            {"id": 42, "file_name": "1.png", "height": 48, "width": 64},
        ],
        "annotations": [
            {"id": 1, "image_id": 41, "category_id": 18, "bbox": [1, 2, 10, 20], "area": 150, "iscrowd": 0},
            {"id": 2, "image_id": 41, "category_id": 17, "bbox": [5, 5, 30, 30], "area": 700, "iscrowd": 1},
        ],
        "categories": [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}],
    }
    (path.parent / "ann.json").write_text(json.dumps(ann))
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "annotations": {"val": "ann.json"}}))
    ds = load_dataset(path)
    assert [p.name for p in ds.files] == ["0.png", "1.png"] and ds.image_ids == [41, 42]  # 2.png not in JSON
    assert ds.category_ids == [17, 18]
    lab = ds.load(0).labels
    assert lab.cls.tolist() == [1, 0] and lab.crowd.tolist() == [False, True]
    assert np.allclose(lab.boxes[0], [1, 2, 11, 22]) and lab.area.tolist() == [150, 700]
    assert len(ds.load(1).labels) == 0


# ---------------------------------------------------------------------------------------- download


def _remote_yaml(tmp_path: Path, url: object, **extra: object) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(
        yaml.safe_dump(
            {"path": "remote", "train": "images/val", "val": "images/val", "names": ["a"], "download": url, **extra}
        )
    )
    return path


def test_missing_dataset_is_downloaded_unpacked_and_reused(tmp_path):
    archive = zip_bytes(
        {
            "remote/images/val/1.png": png_bytes(),
            "remote/images/val/2.png": png_bytes(),
            "remote/labels/val/1.txt": b"0 0.5 0.5 0.5 0.5\n",
        }
    )
    with serve({"/remote.zip": archive}) as base:
        path = _remote_yaml(tmp_path, base.url("/remote.zip"))
        ds = load_dataset(path)
        again = load_dataset(path)
        assert len(base.requests_for("/remote.zip")) == 1
    root = tmp_path / "datasets" / "remote"
    assert ds.root == again.root == root and len(ds) == 2 and len(ds.load(0).labels) == 1
    assert not (tmp_path / "datasets" / "remote.zip").exists()
    assert not [p for p in (tmp_path / "datasets").iterdir() if p.name.startswith(".")]  # no temp left


def test_download_entries_with_dir_and_hash(tmp_path):
    import hashlib

    images = zip_bytes({"val/1.png": png_bytes()})
    with serve({"/imgs.zip": images}) as base:
        entry = {"url": base.url("/imgs.zip"), "dir": "images", "sha256": hashlib.sha256(images).hexdigest()}
        assert len(load_dataset(_remote_yaml(tmp_path, [entry]))) == 1
        bad = {**entry, "sha256": "0" * 64}
        other = tmp_path / "o"
        other.mkdir()
        with pytest.raises(YoloNasError, match=r"imgs\.zip"):
            load_dataset(_remote_yaml(other, [bad], path="remote2"))


def test_offline_download_fails_with_one_line_naming_url_and_layout(tmp_path):
    with serve({}, status={"/gone.zip": 404}) as base:
        url = base.url("/gone.zip")
        with pytest.raises(YoloNasError) as err:
            load_dataset(_remote_yaml(tmp_path, url))
    message = str(err.value)
    assert url in message and "images/val" in message and "\n" not in message


def test_scripts_and_unsafe_archives_are_refused(tmp_path):
    with pytest.raises(YoloNasError, match="script"):
        load_dataset(_remote_yaml(tmp_path, "bash get.sh"))
    evil = zip_bytes({"../escape.txt": b"x"})
    with serve({"/evil.zip": evil}) as base, pytest.raises(YoloNasError, match="unsafe"):
        load_dataset(_remote_yaml(tmp_path, base.url("/evil.zip")))
    assert not (tmp_path / "escape.txt").exists()


def test_archive_put_by_hand_is_used_without_network(tmp_path):
    archive = zip_bytes({"remote/images/val/1.png": png_bytes()})
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "remote.zip").write_bytes(archive)
    ds = load_dataset(_remote_yaml(tmp_path, "http://127.0.0.1:9/remote.zip"))  # port 9: nothing listens
    assert len(ds) == 1 and not (tmp_path / "datasets" / "remote.zip").exists()


def test_coco_yaml_fetches_only_what_the_split_needs():
    from yolonas_cli.data.datasets.download import download_entries
    from yolonas_cli.data.datasets.yaml_spec import read_yaml

    path = find_yaml("coco")
    entries = download_entries(read_yaml(path), path)
    for_val = [e.url.rsplit("/", 1)[-1] for e in entries if e.splits is None or "val" in e.splits]
    assert for_val == ["coco2017labels.zip", "val2017.zip"]
    assert [e.dir for e in entries] == ["..", "images", "images"]


@pytest.mark.parametrize("where", ["absolute", "../../../outside", "deep/../../../../outside"])
def test_a_download_never_unpacks_outside_the_datasets_folder(tmp_path, monkeypatch, where):
    """`dir:` (absolute or climbing out with ..) cannot place an archive's files outside the datasets folder."""
    monkeypatch.setenv(DATASETS_DIR_ENV, str(tmp_path / "a" / "b" / "datasets"))
    target = tmp_path / "outside" if where == "absolute" else where
    archive = zip_bytes({"marker.txt": b"planted"})
    with serve({"/evil.zip": archive}) as base:
        path = _remote_yaml(tmp_path, [{"url": base.url("/evil.zip"), "dir": str(target)}])
        with pytest.raises(YoloNasError) as err:
            load_dataset(path)
        assert base.requests_for("/evil.zip") == []  # refused before anything is fetched
    message = str(err.value)
    assert "outside the datasets folder" in message and "\n" not in message
    assert list(tmp_path.rglob("marker.txt")) == [] and list(tmp_path.rglob("evil.zip")) == []


def test_an_absolute_dataset_path_outside_the_datasets_folder_is_not_a_download_target(tmp_path, monkeypatch):
    monkeypatch.setenv(DATASETS_DIR_ENV, str(tmp_path / "datasets"))
    with serve({"/d.zip": zip_bytes({"marker.txt": b"planted"})}) as base:
        path = _remote_yaml(tmp_path, base.url("/d.zip"), path=str(tmp_path / "elsewhere" / "remote"))
        with pytest.raises(YoloNasError, match="outside the datasets folder"):
            load_dataset(path)
    assert list(tmp_path.rglob("marker.txt")) == []


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes are POSIX")
def test_named_pipes_in_a_split_are_skipped_never_opened(tmp_path, monkeypatch):
    import os
    import threading

    from yolonas_cli.core import console

    seen: list[str] = []
    monkeypatch.setattr(console, "warn", seen.append)
    root = tmp_path / "ds"
    write_yolo_dataset(root, n=1)
    os.mkfifo(root / "images" / "val" / "pipe.png")
    (root / "val.txt").write_text("images/val/0.png\nimages/val/pipe.png\n")
    box: dict = {}

    def run() -> None:
        folder_split = load_dataset(root / "data.yaml")
        (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "val.txt", "names": ["a", "b"]}))
        box["files"] = [[p.name for p in folder_split.files], [p.name for p in load_dataset(root / "data.yaml").files]]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    blocked = thread.is_alive()
    release_readers(root / "images" / "val" / "pipe.png")
    assert not blocked, "a named pipe was opened for reading"
    assert box["files"] == [["0.png"], ["0.png"]]
    assert sum("pipe.png" in w and "named pipe" in w for w in seen) == 2


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_as_label_file_is_a_corrupt_sample_not_a_hang(tmp_path):
    import os
    import threading

    os.mkfifo(tmp_path / "a.txt")
    box: dict = {}

    def run() -> None:
        try:
            read_txt_labels(tmp_path / "a.txt", (10, 10), 2)
        except CorruptSample as exc:
            box["error"] = str(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    blocked = thread.is_alive()
    release_readers(tmp_path / "a.txt")
    assert not blocked, "the label pipe was opened for reading"
    assert "not a regular file" in box["error"]


def release_readers(pipe: Path) -> None:
    """Open and close the writing end once, so that a reader blocked on `pipe` gets EOF and its thread ends."""
    import contextlib
    import os

    with contextlib.suppress(OSError):  # OSError: nobody is reading, nothing to release
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))


# ---------------------------------------------------------------------------------------- archive bombs


def zip_of_zeros(size: int, name: str = "remote/images/val/zeros.png") -> bytes:
    """A deflated zip holding `size` zero bytes (256 MiB -> about 260 KB: a ratio near 1000)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, zf.open(name, "w") as f:
        chunk = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
    return buf.getvalue()


def tar_gz_of_zeros(size: int, name: str = "zeros.bin") -> bytes:
    """A gzip-compressed tar holding `size` (a multiple of 1 MiB) zero bytes, streamed (never in memory)."""
    import tarfile
    import zlib

    info = tarfile.TarInfo(name)
    info.size = size
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    parts = [packer.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    chunk = b"\0" * (1 << 20)
    parts += [packer.compress(chunk) for _ in range(size >> 20)]
    parts += [packer.compress(b"\0" * 1024), packer.flush()]  # the end-of-archive blocks
    return b"".join(parts)


def test_a_zip_bomb_in_a_dataset_download_is_refused_before_unpacking(tmp_path):
    bomb = zip_of_zeros(256 << 20)
    assert len(bomb) < 1 << 20
    with serve({"/remote.zip": bomb}) as base, pytest.raises(YoloNasError) as err:
        load_dataset(_remote_yaml(tmp_path, base.url("/remote.zip")))
    message = str(err.value)
    assert "over 100 times its size" in message and "nothing was unpacked" in message and "\n" not in message
    assert list(tmp_path.rglob("zeros.png")) == [] and list(tmp_path.rglob("remote.zip")) == []
    assert not [p for p in (tmp_path / "datasets").rglob("*") if p.name.startswith(".")]  # no temp left


def test_a_tar_gz_bomb_is_refused_before_unpacking(tmp_path):
    from yolonas_cli.weights.archives import unpack_archive

    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(tar_gz_of_zeros(256 << 20))
    (tmp_path / "out").mkdir()
    with pytest.raises(YoloNasError, match="over 100 times its size"):
        unpack_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == [] and not archive.exists()


def test_small_archives_that_compress_well_still_unpack(tmp_path):
    """The ratio rule starts past 64 MiB: a 16 MiB file of zeros (ratio ~1000) is a legitimate small archive."""
    from yolonas_cli.weights.archives import unpack_archive

    archive = tmp_path / "labels.zip"
    archive.write_bytes(zip_of_zeros(16 << 20, name="labels/all.txt"))
    (tmp_path / "out").mkdir()
    unpack_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "labels" / "all.txt").stat().st_size == 16 << 20


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "device"])
def test_tar_members_that_are_not_files_or_folders_are_refused(tmp_path, kind):
    import tarfile

    from yolonas_cli.weights.archives import unpack_archive

    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("data/odd")
        info.type = {
            "symlink": tarfile.SYMTYPE,
            "hardlink": tarfile.LNKTYPE,
            "fifo": tarfile.FIFOTYPE,
            "device": tarfile.CHRTYPE,
        }[kind]
        info.linkname = "/etc/passwd" if "link" in kind else ""
        tf.addfile(info)
    (tmp_path / "out").mkdir()
    with pytest.raises(YoloNasError, match="unsafe members"):
        unpack_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_unpacking_checks_free_space_first(tmp_path, monkeypatch):
    import shutil as real_shutil

    from yolonas_cli.weights import archives

    archive = tmp_path / "d.zip"
    archive.write_bytes(zip_bytes({"a/1.png": png_bytes()}))
    (tmp_path / "out").mkdir()
    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))  # a full disk
    with pytest.raises(YoloNasError, match=r"needs .* but only 1\.0 MiB is free"):
        archives.unpack_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_dataset_yaml_alias_bomb_is_one_usage_error(tmp_path: Path) -> None:
    from hostile import yaml_laughs
    from yolonas_cli.data.datasets.yaml_spec import read_yaml

    path = tmp_path / "laughs.yaml"
    path.write_text(yaml_laughs(7) + "val: images\nnames: *l7\n")  # 10**7 strings
    with pytest.raises(UsageError, match=r"cannot read the dataset YAML .*more than 100,000 nodes"):
        read_yaml(path)


def _coco_dataset(tmp_path: Path, ann: object) -> Path:
    path = write_yolo_dataset(tmp_path / "ds", names=["cat", "dog"])
    (path.parent / "ann.json").write_text(json.dumps(ann))
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "annotations": {"val": "ann.json"}}))
    return path


_IMAGE = {"id": 1, "file_name": "0.png"}
_ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}
_CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


@pytest.mark.parametrize(
    ("ann", "expected"),
    [
        ([_IMAGE], "the top level is a JSON list, not an object"),
        ({"images": {"0": _IMAGE}, "annotations": [], "categories": _CATS}, "'images' is a JSON object, not a list"),
        ({"images": [{"id": 1}], "annotations": [], "categories": _CATS}, "images[0] has no 'file_name'"),
        ({"images": [_IMAGE, "0.png"], "annotations": [], "categories": _CATS}, "images[1] is a JSON string"),
        ({"images": [_IMAGE], "annotations": [_ANN, {**_ANN, "id": 2}], "categories": _CATS}, None),
        (
            {
                "images": [_IMAGE],
                "annotations": [{k: v for k, v in _ANN.items() if k != "image_id"}],
                "categories": _CATS,
            },
            "annotations[0] has no 'image_id'",
        ),
        (
            {"images": [_IMAGE], "annotations": [_ANN, {**_ANN, "bbox": "1,2,3,4"}], "categories": _CATS},
            "annotations[1].bbox is not [x, y, width, height]",
        ),
        (
            {"images": [_IMAGE], "annotations": [{**_ANN, "bbox": [1, 2, float("inf"), 4]}], "categories": _CATS},
            "annotations[0].bbox",
        ),
        ({"images": [_IMAGE], "annotations": [{**_ANN, "category_id": "1"}], "categories": _CATS}, "category_id"),
        ({"images": [_IMAGE], "annotations": [], "categories": [{"id": 1}]}, "categories[0] has no 'name'"),
    ],
)
def test_malformed_coco_json_is_one_line_naming_the_entry(tmp_path, ann, expected):
    path = _coco_dataset(tmp_path, ann)
    if expected is None:  # the control: a well-formed file loads
        assert len(load_dataset(path)) == 1
        return
    with pytest.raises(YoloNasError) as err:
        load_dataset(path)
    message = str(err.value)
    assert "ann.json" in message and expected in message and "\n" not in message
    assert not isinstance(err.value, KeyError)


def test_coco_json_defaults_area_crowd_and_id(tmp_path):
    path = _coco_dataset(
        tmp_path,
        {
            "images": [_IMAGE],
            "annotations": [{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4]}],
            "categories": _CATS,
        },
    )
    ds = load_dataset(path)
    assert ds.coco is not None and ds.coco.data["annotations"][0] == {
        "image_id": 1,
        "category_id": 2,
        "bbox": [1, 2, 3, 4],
        "area": 12,
        "iscrowd": 0,
        "id": 1,
    }
    assert ds.load(0).labels.cls.tolist() == [1]
