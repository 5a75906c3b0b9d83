"""The pinned weights records (weights.lock) and their loader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import yolonas_cli
from yolonas_cli.core.errors import WeightsError
from yolonas_cli.weights.lock import WeightsRecord, default_lock_path, find_record, known_names, load_lock

PACKAGED = Path(yolonas_cli.__file__).parent / "bundled" / "weights.lock"
LICENCE_URL = "https://github.com/Deci-AI/super-gradients/blob/master/LICENSE.YOLONAS.md"
SG_SHA = {
    "s": "c1b1d9148ab8ae5d5984699547e850955ff9efccaf568c67b3d605acb4bfe1cb",
    "m": "b194fc7fa196f76161c6356558bedf04fb99a62325a74a36a4bec3ca8ba48250",
    "l": "91a06beaa1ce1a651d6691e3198061da996eafc8890503238dedacbd4c392a32",
}


@pytest.fixture(autouse=True)
def _packaged_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOLONAS_WEIGHTS_LOCK", raising=False)


def _entry(**over: object) -> dict:
    entry = {
        "urls": ["https://example.invalid/w.pt"],
        "sha256": None,
        "size": None,
        "variant": "s",
        "input_size": [640, 640],
        "num_classes": 80,
        "class_names": "coco80",
        "format": "sg-model-pickle",
        "licence": {"name": "L", "url": "https://example.invalid/licence"},
    }
    entry.update(over)
    return entry


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "lock.json"
    path.write_text(json.dumps(doc))
    return path


def test_packaged_lock_has_the_six_official_records() -> None:
    assert default_lock_path() == PACKAGED
    records = load_lock()
    assert sorted(records) == sorted([f"yolo_nas_{v}.pt" for v in "sml"] + [f"yolo_nas_{v}_coco.pth" for v in "sml"])
    for record in records.values():
        assert isinstance(record, WeightsRecord)
        assert record.input_size == (640, 640) and record.num_classes == 80 and record.class_names == "coco80"
        assert record.licence_name == "YOLO-NAS weights licence (non-commercial)"
        assert record.licence_url == LICENCE_URL
        assert record.size is None


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_ultralytics_records(variant: str) -> None:
    record = load_lock()[f"yolo_nas_{variant}.pt"]
    assert record.variant == variant and record.format == "sg-model-pickle" and record.sha256 is None
    tags = [url.split("/")[-2] for url in record.urls]
    assert tags == ["v0.0.0", "v8.2.0", "v8.3.0"]
    prefix = "https://github.com/ultralytics/assets/releases/download/"
    assert all(url.startswith(prefix) for url in record.urls)
    assert all(url.endswith(f"/yolo_nas_{variant}.pt") for url in record.urls)


@pytest.mark.parametrize("variant", ["s", "m", "l"])
def test_supergradients_records(variant: str) -> None:
    name = f"yolo_nas_{variant}_coco.pth"
    record = load_lock()[name]
    assert record.variant == variant and record.format == "sg-checkpoint"
    assert record.sha256 == SG_SHA[variant]
    assert record.urls == (
        f"https://d2gjn4b69gu75n.cloudfront.net/models/{name}",
        f"https://sg-hub-nv.s3.amazonaws.com/models/{name}",
        f"https://sghub.deci.ai/models/{name}",
    )


def test_aliases_and_unknown_names() -> None:
    assert find_record("yolo_nas_s").name == "yolo_nas_s.pt"
    assert find_record("yolo_nas_l.pt").name == "yolo_nas_l.pt"
    assert find_record("yolo_nas_m_coco").name == "yolo_nas_m_coco.pth"
    assert find_record("yolo_nas_x.pt") is None
    assert "yolo_nas_s" in known_names() and "yolo_nas_s.pt" in known_names()


def test_record_is_frozen() -> None:
    record = find_record("yolo_nas_s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.sha256 = "0" * 64  # type: ignore[misc]


def test_env_var_overrides_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, {"aliases": {"mine": "mine.pt"}, "weights": {"mine.pt": _entry()}})
    monkeypatch.setenv("YOLONAS_WEIGHTS_LOCK", str(path))
    assert list(load_lock()) == ["mine.pt"]
    assert find_record("mine").urls == ("https://example.invalid/w.pt",)
    assert find_record("yolo_nas_s") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("urls", []),
        ("urls", ["ftp://x/y"]),
        ("sha256", "ABC"),
        ("sha256", "g" * 64),
        ("size", -1),
        ("size", True),
        ("variant", "x"),
        ("input_size", [640]),
        ("num_classes", 0),
        ("class_names", ""),
        ("format", "onnx"),
        ("licence", {"name": "L"}),
    ],
)
def test_bad_entry_is_a_clear_error(tmp_path: Path, field: str, value: object) -> None:
    path = _write(tmp_path, {"weights": {"bad.pt": _entry(**{field: value})}})
    with pytest.raises(WeightsError) as info:
        load_lock(path)
    message = str(info.value)
    assert "'bad.pt'" in message and repr(field) in message and str(path) in message
    assert "\n" not in message


def test_missing_field_and_bad_documents(tmp_path: Path) -> None:
    entry = _entry()
    del entry["variant"]
    with pytest.raises(WeightsError, match="'variant'"):
        load_lock(_write(tmp_path, {"weights": {"a.pt": entry}}))
    with pytest.raises(WeightsError, match=r"unknown record 'nope\.pt'"):
        load_lock(_write(tmp_path, {"aliases": {"a": "nope.pt"}, "weights": {"a.pt": _entry()}}))
    with pytest.raises(WeightsError, match="'weights' object"):
        load_lock(_write(tmp_path, ["not", "an", "object"]))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(WeightsError, match="cannot read the weights lock"):
        load_lock(tmp_path / "broken.json")
    with pytest.raises(WeightsError, match="cannot read the weights lock"):
        load_lock(tmp_path / "missing.json")
