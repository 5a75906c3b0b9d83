"""Termination signals handled like Ctrl-C (`core.signals`); the CLI's use of it (exit 143/129, complete
files, no temporary folders) is tested through the real command in test_bad_inputs.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from yolonas_cli.core.signals import Terminated, describe, exit_code, terminations_as_interrupts

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


@pytest.mark.parametrize(("signum", "code", "text"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_a_termination_signal_raises_a_keyboard_interrupt(signum: int, code: int, text: str) -> None:
    before = signal.getsignal(signum)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as info, terminations_as_interrupts():
        os.kill(os.getpid(), signum)
        time.sleep(10)  # interrupted by the signal at once
    assert time.monotonic() - started < 5
    assert isinstance(info.value, Terminated) and exit_code(info.value) == code
    assert describe(info.value) == f"terminated by {text}"
    assert signal.getsignal(signum) is before  # restored after the block


def test_ctrl_c_keeps_its_code() -> None:
    assert exit_code(KeyboardInterrupt()) == 130 and describe(KeyboardInterrupt()) == "interrupted"


def test_a_second_signal_does_not_cut_the_cleanup_short() -> None:
    cleaned: list[str] = []
    with pytest.raises(Terminated), terminations_as_interrupts():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        finally:
            os.kill(os.getpid(), signal.SIGHUP)  # ignored: the first signal's cleanup runs to its end
            time.sleep(0.05)
            cleaned.append("done")
    assert cleaned == ["done"]


def test_outside_the_main_thread_it_does_nothing() -> None:
    seen: list[object] = []

    def worker() -> None:
        with terminations_as_interrupts():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert seen == [before]
