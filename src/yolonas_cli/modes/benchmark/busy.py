"""`busy=N`: N processes that keep a CPU busy beside the timed runs, the way a browser, a CI job or another
predict does, so that the benchmark can say how a row degrades on a shared CPU.

Each process is a bare Python interpreter spinning in a loop (one core, no memory traffic to speak of). They
are paused with SIGSTOP and resumed with SIGCONT, so that the benchmark alternates quiet rounds and busy
rounds within one run: both see the same machine, and their ratio is what the run reports. They stop by
themselves after `MAX_SECONDS` should the benchmark die without stopping them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from yolonas_cli.core.errors import UsageError

MAX_SECONDS = 3600  # a spinner's own deadline
_STOP_POLLS = 500  # looks (10 ms apart) for a paused process to report that it stopped
SPIN_CODE = (  # bounded: the clock is read every 100,000 iterations, and the loop ends at the deadline
    "import time\n"
    "deadline = time.monotonic() + {seconds}\n"
    "while time.monotonic() < deadline:\n"
    "    for _ in range(100_000):\n"
    "        pass\n"
)


class Spinners:
    """N spinning processes, paused except inside `running()`.

    A context manager: the processes start (paused) on entry and are killed on exit."""

    def __init__(self, count: int, seconds: int = MAX_SECONDS):
        if not hasattr(signal, "SIGSTOP"):
            raise UsageError("busy= pauses the busy processes with POSIX signals (Linux or macOS): use busy=0 here")
        self.count = count
        self.seconds = seconds
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> Spinners:
        code = SPIN_CODE.format(seconds=self.seconds)
        for _ in range(self.count):
            self.processes.append(subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL))
        self._pause()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.kill()
            process.wait(timeout=10)
        self.processes.clear()

    @contextmanager
    def running(self) -> Iterator[None]:
        """The processes spin for the enclosed block, then pause again."""
        for process in self._alive():
            process.send_signal(signal.SIGCONT)
        try:
            yield
        finally:
            self._pause()

    def _pause(self) -> None:
        """SIGSTOP every process and wait until each has stopped (a signal is delivered asynchronously)."""
        alive = self._alive()
        for process in alive:
            process.send_signal(signal.SIGSTOP)
        for process in alive:
            for _ in range(_STOP_POLLS):  # bounded: a process that does not report stopping is left as it is
                if os.waitpid(process.pid, os.WUNTRACED | os.WNOHANG)[0]:
                    break
                time.sleep(0.01)

    def _alive(self) -> list[subprocess.Popen]:
        return [process for process in self.processes if process.poll() is None]
