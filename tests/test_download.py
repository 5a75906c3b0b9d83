"""The shared downloader (fetch) and the weights resolver, against a local HTTP server only."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
import torch

from httpserver import serve
from yolonas_cli.core import console
from yolonas_cli.core.errors import DownloadError, UsageError
from yolonas_cli.weights import download, resolve
from yolonas_cli.weights.download import fetch, fetch_result, sha256_file
from yolonas_cli.weights.resolve import CACHE_LOCK_NAME, cache_dir, resolve_weights

DATA = bytes(range(256)) * 800  # 204,800 bytes: several read chunks
SHA = hashlib.sha256(DATA).hexdigest()


def _weights_bytes() -> bytes:
    """A small file laid out as torch.save writes weights (a zip holding <folder>/data.pkl), ~200 KB."""
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(50_000, dtype=torch.float32)}, buffer)
    return buffer.getvalue()


WEIGHTS = _weights_bytes()  # what the weights resolver is served: it checks that a download is weights
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()
FAST = {"timeout": 0.5, "retries": 2}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real cache, no backoff waits (conftest keeps the network local)."""
    monkeypatch.setattr(download, "BACKOFF_BASE", 0.0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("YOLONAS_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("YOLONAS_WEIGHTS_LOCK", raising=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------------------- fetch


def test_fetch_success(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "a.bin"
    with serve({"a.bin": DATA}) as base:
        result = fetch_result(base.url("a.bin"), dest, sha256=SHA, size=len(DATA), **FAST)
    assert result.path == dest and result.sha256 == SHA and result.size == len(DATA)
    assert result.url == base.url("a.bin")
    assert dest.read_bytes() == DATA and _leftovers(dest.parent) == ["a.bin"]
    assert sha256_file(dest) == SHA


def test_sha256_mismatch_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "a.bin"
    with serve({"a.bin": DATA}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), dest, sha256="0" * 64, **FAST)
    message = str(info.value)
    assert base.url("a.bin") in message and "sha256" in message and SHA in message and "\n" not in message
    assert _leftovers(dest.parent) == []


def test_size_mismatch_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    with serve({"a.bin": DATA}) as base, pytest.raises(DownloadError, match=r"expected 5\b"):
        fetch(base.url("a.bin"), dest, size=5, **FAST)
    assert _leftovers(tmp_path) == []


def test_interrupted_transfer_is_resumed_with_range(tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    with serve({"a.bin": DATA}, cut={"a.bin": [50_000, 30_000]}) as base:
        fetch(base.url("a.bin"), dest, sha256=SHA, **FAST)
    seen = base.requests_for("a.bin")
    assert [r.range for r in seen] == [None, "bytes=50000-", "bytes=80000-"]
    assert [r.status for r in seen] == [200, 206, 206]
    assert dest.read_bytes() == DATA and _leftovers(tmp_path) == ["a.bin"]


def test_existing_part_is_resumed(tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(DATA[:1000])
    with serve({"a.bin": DATA}) as base:
        fetch(base.url("a.bin"), dest, sha256=SHA, **FAST)
    assert [r.range for r in base.requests] == ["bytes=1000-"]
    assert dest.read_bytes() == DATA


def test_stale_part_with_pinned_hash_restarts_from_zero(tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"x" * 1000)
    with serve({"a.bin": DATA}) as base:
        fetch(base.url("a.bin"), dest, sha256=SHA, **FAST)
    assert [r.range for r in base.requests] == ["bytes=1000-", None]
    assert dest.read_bytes() == DATA


@pytest.mark.parametrize("case", ["server ignores Range (200)", "part too long (416)"])
def test_resume_refused_restarts(tmp_path: Path, case: str) -> None:
    dest = tmp_path / "a.bin"
    ignores = case.endswith("(200)")
    (tmp_path / "a.bin.part").write_bytes(DATA[:1000] if ignores else DATA + b"extra")
    with serve({"a.bin": DATA}, ranges=not ignores) as base:
        fetch(base.url("a.bin"), dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA and _leftovers(tmp_path) == ["a.bin"]
    assert [r.status for r in base.requests] == ([200] if ignores else [416, 200])


def test_404_is_not_retried(tmp_path: Path) -> None:
    with serve({}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("gone.bin"), tmp_path / "gone.bin", **FAST)
    message = str(info.value)
    assert message.startswith(f"could not download gone.bin from {base.url('gone.bin')} (HTTP 404")
    assert f"put the file by hand at {tmp_path / 'gone.bin'}" in message
    assert len(base.requests) == 1 and _leftovers(tmp_path) == []


def test_403_is_not_retried(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, status={"a.bin": 403}) as base, pytest.raises(DownloadError, match="403"):
        fetch(base.url("a.bin"), tmp_path / "a.bin", **FAST)
    assert len(base.requests) == 1


def test_500_once_is_retried(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, errors={"a.bin": [500]}) as base:
        fetch(base.url("a.bin"), tmp_path / "a.bin", sha256=SHA, **FAST)
    assert [r.status for r in base.requests] == [500, 200]


def test_persistent_500_gives_up_after_retries(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, status={"a.bin": 503}) as base, pytest.raises(DownloadError, match="503"):
        fetch(base.url("a.bin"), tmp_path / "a.bin", timeout=0.5, retries=2)
    assert len(base.requests) == 3


def test_timeout(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, hang={"a.bin": 1}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", timeout=0.3, retries=0)
    assert base.url("a.bin") in str(info.value) and "timed out after 0.3 s" in str(info.value)


def test_timeout_then_success(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, hang={"a.bin": 1}) as base:
        fetch(base.url("a.bin"), tmp_path / "a.bin", sha256=SHA, timeout=0.3, retries=1)
    assert (tmp_path / "a.bin").read_bytes() == DATA and len(base.requests) == 2


def test_mirror_fallback(tmp_path: Path) -> None:
    with serve({"mirror/a.bin": DATA}, errors={"bad/a.bin": [500, 500, 500]}) as base:
        urls = [base.url("missing/a.bin"), base.url("bad/a.bin"), base.url("mirror/a.bin")]
        result = fetch_result(urls, tmp_path / "a.bin", sha256=SHA, **FAST)
    assert result.url == urls[2] and (tmp_path / "a.bin").read_bytes() == DATA


def test_all_mirrors_fail_names_each_url(tmp_path: Path) -> None:
    with serve({}) as base, pytest.raises(DownloadError) as info:
        fetch([base.url("one/a.bin"), base.url("two/a.bin")], tmp_path / "a.bin", **FAST)
    message = str(info.value)
    assert base.url("one/a.bin") in message and base.url("two/a.bin") in message and "\n" not in message


def test_connection_refused(tmp_path: Path) -> None:
    with serve({}) as base:
        url = base.url("a.bin")
    with pytest.raises(DownloadError, match=r"could not download a\.bin from http://127\.0\.0\.1"):
        fetch(url, tmp_path / "a.bin", timeout=0.5, retries=1)


def test_redirect_is_followed(tmp_path: Path) -> None:
    with serve({"real.bin": DATA}, redirect={"a.bin": "/real.bin"}) as base:
        fetch(base.url("a.bin"), tmp_path / "a.bin", sha256=SHA, **FAST)
    assert (tmp_path / "a.bin").read_bytes() == DATA


def test_fetch_without_content_length(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, content_length=False) as base:
        fetch(base.url("a.bin"), tmp_path / "a.bin", sha256=SHA, **FAST)
    assert (tmp_path / "a.bin").read_bytes() == DATA


# --------------------------------------------------------------------------------------------- resolve


def _lock(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    urls: list[str],
    *,
    sha256: str | None = None,
    size: int | None = None,
) -> None:
    """Point YOLONAS_WEIGHTS_LOCK at a lock whose only record, yolo_nas_s.pt, is served at `urls`."""
    entry = {
        "urls": urls,
        "sha256": sha256,
        "size": size,
        "variant": "s",
        "input_size": [640, 640],
        "num_classes": 80,
        "class_names": "coco80",
        "format": "sg-model-pickle",
        "licence": {"name": "Test licence", "url": "https://example.invalid/licence"},
    }
    path = tmp_path / "test.lock"
    doc = {"aliases": {"yolo_nas_s": "yolo_nas_s.pt"}, "weights": {"yolo_nas_s.pt": entry}}
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("YOLONAS_WEIGHTS_LOCK", str(path))


@pytest.fixture
def infos(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(console, "info", seen.append)
    return seen


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == tmp_path / "xdg" / "yolo-nas" and cache_dir().is_dir()
    monkeypatch.setenv("YOLONAS_WEIGHTS_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg" and (tmp_path / "arg").is_dir()
    monkeypatch.delenv("YOLONAS_WEIGHTS_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "yolo-nas"


def test_local_path_wins(tmp_path: Path) -> None:
    local = tmp_path / "yolo_nas_s.pt"
    local.write_bytes(b"not even weights")
    assert resolve_weights(str(local)) == local


def test_unknown_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        resolve_weights("yolo_nas_x.pt", tmp_path)
    message = str(info.value)
    assert message.startswith("model 'yolo_nas_x.pt' not found: not a file, and not one of yolo_nas_s.pt, ")
    assert message.endswith("Did you mean 'yolo_nas_s.pt'?")


def test_download_then_cache_with_server_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]
) -> None:
    cache = tmp_path / "cache"
    with serve({"yolo_nas_s.pt": WEIGHTS}) as base:
        _lock(tmp_path, monkeypatch, [base.url("yolo_nas_s.pt")], sha256=WEIGHTS_SHA)
        path = resolve_weights("yolo_nas_s", cache)
    assert path == cache / "yolo_nas_s.pt" and path.read_bytes() == WEIGHTS
    assert resolve_weights("yolo_nas_s.pt", cache) == path  # server is gone: served from the cache
    assert resolve_weights("yolo_nas_s", cache, offline=True) == path
    assert len(base.requests) == 1


def test_env_weights_dir_is_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]) -> None:
    monkeypatch.setenv("YOLONAS_WEIGHTS_DIR", str(tmp_path / "envcache"))
    with serve({"yolo_nas_s.pt": WEIGHTS}) as base:
        _lock(tmp_path, monkeypatch, [base.url("yolo_nas_s.pt")])
        assert resolve_weights("yolo_nas_s") == tmp_path / "envcache" / "yolo_nas_s.pt"


def test_resolve_mirror_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]) -> None:
    with serve({"v2/yolo_nas_s.pt": WEIGHTS}) as base:
        _lock(tmp_path, monkeypatch, [base.url("v1/yolo_nas_s.pt"), base.url("v2/yolo_nas_s.pt")])
        path = resolve_weights("yolo_nas_s", tmp_path / "cache")
    state = json.loads((tmp_path / "cache" / CACHE_LOCK_NAME).read_text())
    assert path.read_bytes() == WEIGHTS
    assert state["weights"]["yolo_nas_s.pt"]["url"] == base.url("v2/yolo_nas_s.pt")


def test_pinned_mismatch_leaves_nothing_in_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]
) -> None:
    cache = tmp_path / "cache"
    with serve({"yolo_nas_s.pt": WEIGHTS}) as base, pytest.raises(DownloadError) as info:
        _lock(tmp_path, monkeypatch, [base.url("yolo_nas_s.pt")], sha256="f" * 64)
        resolve_weights("yolo_nas_s", cache)
    assert base.url("yolo_nas_s.pt") in str(info.value)
    assert not any(name.startswith("yolo_nas_s.pt") for name in _leftovers(cache))
    assert infos == []  # no licence notice for a failed download


def test_size_mismatch_from_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]) -> None:
    too_big = len(WEIGHTS) + 1
    with serve({"yolo_nas_s.pt": WEIGHTS}) as base, pytest.raises(DownloadError, match=f"expected {too_big}"):
        _lock(tmp_path, monkeypatch, [base.url("yolo_nas_s.pt")], size=len(WEIGHTS) + 1)
        resolve_weights("yolo_nas_s", tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_offline_message_names_the_cache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _lock(tmp_path, monkeypatch, ["http://127.0.0.1:9/yolo_nas_s.pt"])
    with pytest.raises(DownloadError, match="offline") as info:
        resolve_weights("yolo_nas_s", tmp_path / "cache", offline=True)
    assert str(tmp_path / "cache" / "yolo_nas_s.pt") in str(info.value)


def test_download_error_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve({}) as base:
        url = base.url("yolo_nas_s.pt")
        _lock(tmp_path, monkeypatch, [url])
        with pytest.raises(DownloadError) as info:
            resolve_weights("yolo_nas_s", tmp_path / "cache")
    assert str(info.value) == (
        f"could not download yolo_nas_s.pt from {url} (HTTP 404 Not Found); check the "
        f"network or put the file by hand at {tmp_path / 'cache' / 'yolo_nas_s.pt'}"
    )


def test_tofu_record_and_tampering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]) -> None:
    cache = tmp_path / "cache"
    with serve({"yolo_nas_s.pt": WEIGHTS}) as base:
        _lock(tmp_path, monkeypatch, [base.url("yolo_nas_s.pt")])  # no pinned sha256
        path = resolve_weights("yolo_nas_s", cache)
    entry = json.loads((cache / CACHE_LOCK_NAME).read_text())["weights"]["yolo_nas_s.pt"]
    assert entry["sha256"] == WEIGHTS_SHA and entry["size"] == len(WEIGHTS)
    assert resolve_weights("yolo_nas_s", cache) == path
    path.write_bytes(WEIGHTS[:1000] + bytes([WEIGHTS[1000] ^ 0xFF]) + WEIGHTS[1001:])
    with pytest.raises(DownloadError) as info:
        resolve_weights("yolo_nas_s", cache)
    message = str(info.value)
    assert f"delete {path}" in message and WEIGHTS_SHA in message and "first download" in message
    assert path.exists()  # reported, not silently replaced


def test_pinned_cache_tampering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]) -> None:
    _lock(tmp_path, monkeypatch, ["http://127.0.0.1:9/yolo_nas_s.pt"], sha256=WEIGHTS_SHA)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "yolo_nas_s.pt").write_bytes(b"evil")
    with pytest.raises(DownloadError, match="pinned in the weights lock"):
        resolve_weights("yolo_nas_s", cache)


def test_file_put_by_hand_is_trusted_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]
) -> None:
    _lock(tmp_path, monkeypatch, ["http://127.0.0.1:9/yolo_nas_s.pt"])
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "yolo_nas_s.pt").write_bytes(WEIGHTS)
    assert resolve_weights("yolo_nas_s", cache, offline=True) == cache / "yolo_nas_s.pt"
    assert json.loads((cache / CACHE_LOCK_NAME).read_text())["weights"]["yolo_nas_s.pt"]["sha256"] == WEIGHTS_SHA


def test_licence_printed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]) -> None:
    cache = tmp_path / "cache"
    with serve({"yolo_nas_s.pt": WEIGHTS}) as base:
        _lock(tmp_path, monkeypatch, [base.url("yolo_nas_s.pt")], sha256=WEIGHTS_SHA)
        for _ in range(3):
            resolve_weights("yolo_nas_s", cache)
    notices = [m for m in infos if "Test licence" in m]
    assert notices == ["yolo_nas_s.pt: these weights are under the Test licence, see https://example.invalid/licence"]
    state = json.loads((cache / CACHE_LOCK_NAME).read_text())
    assert state["weights"]["yolo_nas_s.pt"]["licence_shown"] is True


def test_licence_goes_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _lock(tmp_path, monkeypatch, ["http://127.0.0.1:9/yolo_nas_s.pt"], sha256=WEIGHTS_SHA)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "yolo_nas_s.pt").write_bytes(WEIGHTS)
    resolve_weights("yolo_nas_s", tmp_path / "cache")
    resolve_weights("yolo_nas_s", tmp_path / "cache")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("Test licence") == 1


def test_cache_lock_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]) -> None:
    replaced: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        replaced.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(resolve.os, "replace", spy)
    _lock(tmp_path, monkeypatch, ["http://127.0.0.1:9/yolo_nas_s.pt"])
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "yolo_nas_s.pt").write_bytes(WEIGHTS)
    resolve_weights("yolo_nas_s", tmp_path / "cache")
    assert replaced and set(replaced) == {CACHE_LOCK_NAME}
    assert _leftovers(tmp_path / "cache") == [CACHE_LOCK_NAME, "yolo_nas_s.pt"]


def test_unpinned_mirror_switch_does_not_splice(tmp_path: Path) -> None:
    other = b"\xff" * len(DATA)
    with serve({"one/a.bin": other, "two/a.bin": DATA}, cut={"one/a.bin": [1000, 1000]}) as base:
        urls = [base.url("one/a.bin"), base.url("two/a.bin")]
        result = fetch_result(urls, tmp_path / "a.bin", timeout=0.5, retries=1)
    assert result.url == urls[1] and (tmp_path / "a.bin").read_bytes() == DATA
    assert base.requests_for("two/a.bin")[0].range is None


def test_network_failure_keeps_part_for_the_next_call(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, cut={"a.bin": [1000, 1000]}) as base:
        with pytest.raises(DownloadError, match="connection closed after 2000 of 204800 bytes"):
            fetch(base.url("a.bin"), tmp_path / "a.bin", timeout=0.5, retries=1)
        assert (tmp_path / "a.bin.part").stat().st_size == 2000
        fetch(base.url("a.bin"), tmp_path / "a.bin", sha256=SHA, timeout=0.5, retries=1)
    assert base.requests[-1].range == "bytes=2000-" and (tmp_path / "a.bin").read_bytes() == DATA


# ------------------------------------------------------------------------- bounds and payload checks


def test_a_trickling_server_is_given_up_after_the_stall_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte every 0.05 s never trips the per-read timeout; the stall rule stops it within its window."""
    monkeypatch.setattr(download, "STALL_SECONDS", 0.5)
    monkeypatch.setattr(download, "STALL_BYTES", 1000)
    with serve({"a.bin": DATA[:200]}, trickle={"a.bin": (1, 0.05)}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", **FAST)
    assert "stalled" in str(info.value) and not (tmp_path / "a.bin").exists()
    assert len(base.requests_for("a.bin")) == 1  # a stall is not retried on the same URL


def test_the_whole_call_has_a_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "STALL_SECONDS", 60.0)
    with serve({"a.bin": DATA[:400]}, trickle={"a.bin": (1, 0.01)}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", deadline=0.5, **FAST)
    assert "deadline of 0.5 s" in str(info.value) and not (tmp_path / "a.bin").exists()


def test_an_endless_body_stops_at_the_size_cap(tmp_path: Path) -> None:
    with serve({}, endless={"a.bin": b"\0" * 65536}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", max_bytes=1_000_000, **FAST)
    assert "grew past 1000000 bytes" in str(info.value)
    assert _leftovers(tmp_path) == []  # the oversized .part is deleted, not kept to resume


def test_an_endless_body_stops_at_the_known_size(tmp_path: Path) -> None:
    with serve({}, endless={"a.bin": b"\0" * 65536}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", size=300_000, **FAST)
    assert "grew past 300000 bytes, expected 300000" in str(info.value) and _leftovers(tmp_path) == []


def test_an_announced_size_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", max_bytes=1000, **FAST)
    assert f"announces {len(DATA)} bytes, expected at most 1000" in str(info.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Content-Type": "text/html; charset=utf-8"}, "HTML page"),
        ({"Content-Encoding": "gzip"}, "Content-Encoding: gzip"),
    ],
)
def test_pages_and_encoded_bodies_are_not_the_file(tmp_path: Path, headers: dict[str, str], expected: str) -> None:
    with serve({"a.bin": DATA}, headers={"a.bin": headers}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", **FAST)
    assert expected in str(info.value) and _leftovers(tmp_path) == []


def test_a_body_shorter_than_its_content_length_is_not_kept(tmp_path: Path) -> None:
    with serve({"a.bin": DATA}, length={"a.bin": len(DATA) + 5000}) as base, pytest.raises(DownloadError) as info:
        fetch(base.url("a.bin"), tmp_path / "a.bin", **FAST)
    assert f"of {len(DATA) + 5000} bytes" in str(info.value) and not (tmp_path / "a.bin").exists()


def test_validate_runs_before_the_final_name(tmp_path: Path) -> None:
    seen: list[Path] = []

    def never(part: Path) -> str:
        seen.append(part)
        return "not what was asked for"

    with serve({"a.bin": DATA}) as base, pytest.raises(DownloadError, match="not what was asked for"):
        fetch(base.url("a.bin"), tmp_path / "a.bin", validate=never, **FAST)
    assert seen == [tmp_path / "a.bin.part"] and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("served", "headers", "expected"),
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>" * 50, {"Content-Type": "text/html"}, "HTML"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>" * 50, {}, "HTML or XML page"),
        (gzip.compress(WEIGHTS), {"Content-Encoding": "gzip"}, "Content-Encoding: gzip"),
        (gzip.compress(WEIGHTS), {}, "gzip-compressed"),
        (WEIGHTS[: len(WEIGHTS) // 2], {}, "damaged zip"),
        (DATA, {}, "not a zip archive"),
    ],
)
def test_a_download_that_is_not_weights_is_neither_cached_nor_recorded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    infos: list[str],
    served: bytes,
    headers: dict[str, str],
    expected: str,
) -> None:
    cache = tmp_path / "cache"
    with serve({"yolo_nas_s.pt": served}, headers={"yolo_nas_s.pt": headers}) as base:
        _lock(tmp_path, monkeypatch, [base.url("yolo_nas_s.pt")])  # no pinned hash: trust on first use
        with pytest.raises(DownloadError) as info:
            resolve_weights("yolo_nas_s", cache)
    assert expected in str(info.value)
    assert _leftovers(cache) == []  # no file, no .part, no record of a hash


def test_a_bad_cached_file_names_itself_and_says_to_delete_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infos: list[str]
) -> None:
    _lock(tmp_path, monkeypatch, ["http://127.0.0.1:9/yolo_nas_s.pt"])
    cache = tmp_path / "cache"
    cache.mkdir()
    bad = cache / "yolo_nas_s.pt"
    bad.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(DownloadError) as info:
        resolve_weights("yolo_nas_s", cache)
    assert f"delete {bad}" in str(info.value) and "HTML" in str(info.value)
    assert not (cache / CACHE_LOCK_NAME).exists()  # its hash was not trusted on first use


def test_empty_home_is_treated_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME="" made the default cache /.cache/yolo-nas; the account's home is used instead."""
    import pwd

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "")
    account_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert resolve._default_cache_root() == account_home / ".cache"
