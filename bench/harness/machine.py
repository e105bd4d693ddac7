"""What every bench reports about the machine: cores, CPU, Python, Postgres and its settings, the code's
commit, and how busy the machine was before the bench started."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from .proc import cpu_snapshot, cpu_split


def postgres_version(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('shared_buffers', 'synchronous_commit', 'fsync', 'max_wal_size', 'wal_level')"
        ).fetchall()
    assert row is not None
    return f"{row[0]} ({', '.join(f'{k}={v}' for k, v in settings)})"


def code_version() -> str:
    root = Path(__file__).resolve().parents[2]  # bench/harness/ -> the checkout
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+dirty src" if dirty else "")


def background_load(seconds: float = 1.0) -> dict[str, Any]:
    """How busy the machine is before the bench starts (other jobs skew every figure on 2 cores)."""
    before = cpu_snapshot(None)
    time.sleep(seconds)
    split = cpu_split(before, cpu_snapshot(None))
    return {"busy_cores": split["machine_busy"], "top": split["top_other_processes"]}


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def machine_facts() -> dict[str, Any]:
    """What every bench reports about the machine, taken before it creates its database."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "postgres": "?",
        "code": code_version(),
        "background_load": background_load(),
    }


def announce_machine(machine: dict[str, Any], url: str) -> None:
    """Adds the Postgres version to `machine`, prints the machine line, and warns when it was already busy."""
    machine["postgres"] = postgres_version(url)
    print(
        f"machine: nproc={machine['nproc']} cpu={machine['cpu']!r} python={machine['python']}"
        f" postgres={machine['postgres']} code={machine['code']}"
    )
    load = machine["background_load"]
    if load["busy_cores"] > 0.2:
        print(
            f"WARNING: the machine was already busy before the bench: {load['busy_cores']:.2f} cores"
            f" ({load['top']}); every figure below is skewed by it"
        )
