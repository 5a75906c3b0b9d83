"""Shared fixtures: checkpoints of the fixture formula weights written once per test session."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from formula import formula_torch_state_dict


def _write_checkpoint(folder: Path, variant: str) -> Path:
    path = folder / f"formula_{variant}.pth"
    torch.save({"net": formula_torch_state_dict(variant)}, path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SuperGradients-style `{"net": state_dict}` checkpoint of the tiny fixture model (80 classes)."""
    return _write_checkpoint(tmp_path_factory.mktemp("weights"), "tiny")


@pytest.fixture(scope="session")
def s_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same for YOLO-NAS S with the fixture formula weights."""
    return _write_checkpoint(tmp_path_factory.mktemp("weights"), "s")


@pytest.fixture(scope="session", autouse=True)
def _session_weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A fresh weights cache for the session (unless YOLONAS_WEIGHTS_DIR is set): predict's backend=auto
    converts each weights file used into it once, and nothing is written to the user's own cache."""
    if os.environ.get("YOLONAS_WEIGHTS_DIR"):
        yield
        return
    os.environ["YOLONAS_WEIGHTS_DIR"] = str(tmp_path_factory.mktemp("weights_cache"))
    yield
    os.environ.pop("YOLONAS_WEIGHTS_DIR", None)


@pytest.fixture(autouse=True)
def _loopback_network_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the internet: a connection to anything but this machine fails the test."""
    real = socket.create_connection

    def local_only(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert address[0] in ("127.0.0.1", "localhost", "::1"), f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", local_only)


@pytest.fixture
def quiet_console():
    """Console output off for the test (errors still print), restored afterwards."""
    from yolonas_cli.core import console

    previous = console.is_verbose()
    console.set_verbose(False)
    yield
    console.set_verbose(previous)


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray cluster for the whole session, started by the first test that asks for it: 2 CPUs, bound
    to 127.0.0.1, no dashboard, no usage reporting; shut down at the end. Yields its GCS address (what a
    child process passes as ray=). Code under test finds Ray initialised and uses this cluster."""
    import logging
    import os

    import ray

    previous = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=300 * 2**20,
        logging_level=logging.ERROR,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
        else:
            os.environ["RAY_USAGE_STATS_ENABLED"] = previous
