"""A pseudo-terminal for the tests of live console output, and a terminal emulator (pyte) to see what a
person would see on it: the screen plus everything scrolled off it."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import pyte


class PtyReader:
    """Reads the master end of a pseudo-terminal on a thread (a writer blocks once the kernel's buffer is
    full), until the slave end is closed; ``text()`` then holds everything written."""

    def __init__(self, master: int):
        self.master, self._chunks = master, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the slave end is closed (Linux raises EIO)
                return
            if not data:
                return
            self._chunks.append(data)

    def text(self, timeout: float = 30) -> str:
        self._thread.join(timeout)
        os.close(self.master)
        return b"".join(self._chunks).decode("utf-8", "replace")


def run_in_pty(argv: list[str], cwd: Path, columns: int = 110, rows: int = 30, timeout: float = 600,
               env: dict | None = None) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a fresh ``columns`` x ``rows`` pseudo-terminal;
    its exit status and everything it wrote there."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    environment = {**os.environ, "TERM": "xterm-256color", **(env or {})}
    for name in ("COLUMNS", "LINES", "NO_COLOR"):  # the terminal's own size and colours, as for a person
        environment.pop(name, None)
    process = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=environment,
                               start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        else:
            raise AssertionError(f"{argv} did not finish in {timeout}s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # only what this call started (its own session)
        process.wait()
        os.close(master)
    return process.returncode, b"".join(chunks).decode("utf-8", "replace")


def screen_lines(raw: str, columns: int, rows: int) -> list[str]:
    """What the terminal shows after ``raw``: the lines scrolled off the top, then the screen."""
    screen = pyte.HistoryScreen(columns, rows, history=100_000)
    pyte.Stream(screen).feed(raw)
    history = ["".join(line[x].data for x in sorted(line)) for line in screen.history.top]
    shown = ["".join(screen.buffer[y][x].data for x in range(columns)) for y in range(rows)]
    lines = [line.rstrip() for line in history + shown]
    while lines and not lines[-1]:
        lines.pop()
    return lines
