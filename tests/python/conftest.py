"""Fixtures: start the echo example (or the stand-in) on a free port.

The binary is $CARGO_TARGET_DIR (default target)/release/examples/echo (build it with
`cargo build --release --examples`); TOWER_WS_ECHO overrides the path. A path
ending in .py (e.g. tests/python/standin_echo.py) runs with this interpreter.
"""
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
DEFAULT_ECHO = (ROOT / TARGET) / "release" / "examples" / "echo"
START_TIMEOUT = 15.0


def echo_command():
    override = os.environ.get("TOWER_WS_ECHO")
    path = Path(override) if override else DEFAULT_ECHO
    if not path.is_absolute():
        path = (Path.cwd() / path) if (Path.cwd() / path).exists() else ROOT / path
    if not path.exists():
        pytest.fail(
            f"echo server not found at {path}.\n"
            f"Build it first:  (cd {ROOT} && cargo build --release --examples)\n"
            f"or point TOWER_WS_ECHO at a binary (or tests/python/standin_echo.py).",
            pytrace=False,
        )
    if path.suffix == ".py":
        return [sys.executable, str(path)]
    return [str(path)]


def _die_with_parent():
    """Linux: the server gets SIGTERM if pytest dies (no orphan after a crash)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class EchoServer:
    def __init__(self, *args):
        self.stderr = tempfile.TemporaryFile()
        cmd = echo_command() + ["127.0.0.1:0", *args]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        first = {}
        got_line = threading.Event()

        def read_stdout():
            first["line"] = self.proc.stdout.readline().decode(errors="replace")
            got_line.set()
            for _ in self.proc.stdout:  # keep draining so the server never blocks
                pass

        threading.Thread(target=read_stdout, daemon=True).start()
        got_line.wait(START_TIMEOUT)
        line = first.get("line", "")
        m = re.search(r"ws://([0-9.]+|\[[0-9a-fA-F:]+\]|localhost):(\d+)", line)
        if not m:
            self.stop()
            pytest.fail(
                f"{' '.join(cmd)} did not print ws://HOST:PORT as its first line within "
                f"{START_TIMEOUT}s (got {line!r}, exit code {self.proc.returncode}).\n"
                f"stderr:\n{self.stderr_text()}",
                pytrace=False,
            )
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))
        self.url = f"ws://{m.group(1)}:{self.port}"

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def check_alive(self):
        if self.proc.poll() is not None:
            pytest.fail(f"echo server exited with {self.proc.returncode}; stderr:\n"
                        f"{self.stderr_text()}", pytrace=False)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def _echo_deflate():
    s = EchoServer()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def _echo_plain():
    s = EchoServer("--no-deflate")
    yield s
    s.stop()


@pytest.fixture
def echo(_echo_deflate):
    """The echo server with permessage-deflate enabled (the default)."""
    _echo_deflate.check_alive()
    yield _echo_deflate
    _echo_deflate.check_alive()


@pytest.fixture
def echo_nodeflate(_echo_plain):
    """The echo server started with --no-deflate."""
    _echo_plain.check_alive()
    yield _echo_plain
    _echo_plain.check_alive()


def run(coro, timeout=25.0):
    """Run a coroutine with a hard timeout (no test can hang)."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())
