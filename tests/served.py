"""The service as a user runs it, `python -m profilestore serve` in a child process of its own, for tests
that measure the server apart from the test process: its memory (VmRSS) and its latency under load."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from support import free_port


class Served:
    """`profilestore serve` on a free port against `database_url`, with extra environment settings."""

    def __init__(self, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, name = tempfile.mkstemp(prefix="profilestore-served-", suffix=".log")
        self._log = Path(name)
        environment = {**os.environ, "DATABASE_URL": database_url, **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "profilestore", "serve", "--port", str(self.port)],
            env=environment,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(fd)

    def __enter__(self) -> Served:
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"serve exited:\n{self.output()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            assert time.monotonic() < deadline, f"serve did not come up:\n{self.output()}"
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.unlink(missing_ok=True)

    def output(self) -> str:
        return self._log.read_text(errors="replace")[-4000:]

    def log_lines(self) -> list[str]:
        """Everything the server wrote (its JSON request log among it), line by line."""
        return self._log.read_text(errors="replace").splitlines()

    def rss_bytes(self) -> int:
        """The server process's resident memory now."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")
