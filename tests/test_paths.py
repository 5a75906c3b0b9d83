"""Names from untrusted text, containment, special files, the home folder (`core.paths`), and the inter-process
lock of cache entries (`core.locking`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from yolonas_cli.core import locking
from yolonas_cli.core.errors import YoloNasError
from yolonas_cli.core.paths import (
    MAX_NAME_BYTES,
    SpecialFileError,
    expand_user,
    home_dir,
    inside,
    path_inside,
    read_regular_bytes,
    safe_basename,
    special_file_kind,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/x/photo.jpg", "photo.jpg"),
        ("/x/..%2F..%2F..%2Fetc%2Fcron.d%2Fjob.jpg", "job.jpg"),
        ("/x/%2Fetc%2Fpasswd", "passwd"),
        ("/x/..%252F..%252Fdouble.jpg", "double.jpg"),
        ("/x/..%25252F..%25252Ftriple.jpg", "triple.jpg"),
        ("/x/..%5C..%5Cwindows.jpg", "windows.jpg"),
        ("C:\\Windows\\system.ini", "system.ini"),
        ("/x/..", "fallback"),
        ("/x/%2E%2E", "fallback"),
        ("/x/", "fallback"),
        ("/x/new%0Aline%00.jpg", "newline.jpg"),
        ("dog%20one.jpg", "dog one.jpg"),
    ],
)
def test_safe_basename_keeps_one_harmless_component(text: str, expected: str) -> None:
    assert safe_basename(text, fallback="fallback") == expected


def test_safe_basename_shortens_keeping_the_suffix() -> None:
    name = safe_basename("é" * 400 + ".jpg")
    assert name.endswith(".jpg") and len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert set(name[:-4]) == {"é"}  # cut on a character boundary


def test_containment(tmp_path: Path) -> None:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "root", tmp_path / "root" / "sub" / "new.txt")
    assert inside(tmp_path / "root", tmp_path / "root")
    assert not inside(tmp_path / "root", tmp_path / "root" / ".." / "x")
    assert not inside(tmp_path / "root", tmp_path / "root" / "link" / "x")  # a link out counts as out
    assert not inside(tmp_path / "root", "/etc/passwd")
    assert not inside(tmp_path / "root", tmp_path / "rootless")  # a prefix of the name is not a parent
    with pytest.raises(YoloNasError, match="outside"):
        path_inside(tmp_path / "root", tmp_path / "root" / ".." / "x", "the download")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_special_files_are_named_and_never_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "file").write_bytes(b"abc")
    assert special_file_kind(tmp_path / "pipe") == "a named pipe"
    assert special_file_kind("/dev/null") == "a character device"
    assert special_file_kind(tmp_path / "file") is None and special_file_kind(tmp_path) is None
    assert special_file_kind(tmp_path / "missing") is None
    assert read_regular_bytes(tmp_path / "file") == b"abc"
    started = time.monotonic()
    with pytest.raises(SpecialFileError):
        read_regular_bytes(tmp_path / "pipe")  # no writer: a plain open() would block here forever
    with pytest.raises(SpecialFileError):
        read_regular_bytes("/dev/zero")  # endless: a plain read() would exhaust memory
    assert time.monotonic() - started < 5


def test_empty_home_is_not_the_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert home_dir() == tmp_path and expand_user("~/x") == tmp_path / "x"
    monkeypatch.setenv("HOME", "")
    import pwd

    account = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert home_dir() == account and expand_user("~/x") == account / "x"
    assert expand_user("plain/~x") == Path("plain/~x")


# ------------------------------------------------------------------------------------------ locking

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from yolonas_cli.core.locking import exclusive_lock

    target, log, hold = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    with exclusive_lock(target, timeout=30, what="the test"):
        with log.open("a") as f:
            f.write(f"start {sys.argv[4]}\\n")
        time.sleep(hold)
        with log.open("a") as f:
            f.write(f"end {sys.argv[4]}\\n")
    """
)


def _holder(tmp_path: Path, name: str, hold: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, "-c", _HOLDER, str(tmp_path / "entry"), str(tmp_path / "log"), str(hold), name]
    return subprocess.Popen(args, env=env)


def test_two_processes_take_turns_and_leave_no_lock_file(tmp_path: Path) -> None:
    first = _holder(tmp_path, "a", 1.0)
    for _ in range(200):  # until the first holds the lock (at most 10 s)
        if (tmp_path / "log").exists():
            break
        time.sleep(0.05)
    second = _holder(tmp_path, "b", 0.0)
    assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    assert (tmp_path / "log").read_text().split("\n")[:4] == ["start a", "end a", "start b", "end b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]


def test_the_lock_is_reentrant_and_a_waiter_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locking, "POLL_SECONDS", 0.01)
    target = tmp_path / "entry"
    with locking.exclusive_lock(target, timeout=1), locking.exclusive_lock(target, timeout=1):
        assert locking.lock_path(target).exists()
        other = _holder(tmp_path, "x", 0.0)  # another process cannot take it meanwhile
        time.sleep(0.5)
        assert not (tmp_path / "log").exists()
    assert other.wait(timeout=60) == 0 and (tmp_path / "log").read_text() == "start x\nend x\n"
    blocker = _holder(tmp_path, "y", 3.0)
    for _ in range(200):
        if "start y" in (tmp_path / "log").read_text():
            break
        time.sleep(0.05)
    started = time.monotonic()
    with (
        pytest.raises(YoloNasError, match=r"waited 0\.3 s for another yolo-nas process"),
        locking.exclusive_lock(target, timeout=0.3),
    ):
        pass
    assert time.monotonic() - started < 2
    with locking.exclusive_lock(target, timeout=0.3, required=False) as held:  # work the lock only saves
        assert held is False  # the wait ran out: the block runs without the lock
    assert blocker.wait(timeout=60) == 0
    with locking.exclusive_lock(target, timeout=0.3, required=False) as held:
        assert held is True
