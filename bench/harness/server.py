"""The service under test: `profilestore serve` as a child process on a free port."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`profilestore serve` as a child process in its own session (so its workers go with it)."""

    def __init__(self, url: str, port: int, workers: int) -> None:
        exe = Path(sys.executable).parent / "profilestore"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "profilestore.cli"]
        fd, name = tempfile.mkstemp(prefix="profilestore-bench-", suffix=".log")
        self.log = Path(name)
        env = dict(os.environ, DATABASE_URL=url, PROFILESTORE_WORKERS=str(workers))
        self.base = f"http://127.0.0.1:{port}"
        with os.fdopen(fd, "w") as log:
            self.proc = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.output()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.base + "/healthz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /healthz in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.unlink(missing_ok=True)


def basic(secret: str) -> str:
    """The Authorization header of the API secret (HTTP Basic, empty password)."""
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()
