"""The command line as a user runs it: projects commands on a server database, `serve` on the embedded one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from support import free_port

CLI = [sys.executable, "-m", "profilestore"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_projects_commands(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    created = run("projects", "create", "cli-project", "--json", env=env)
    assert created.returncode == 0, created.stderr
    project = json.loads(created.stdout)
    assert set(project) == {"id", "name", "token", "api_secret"}
    listed = json.loads(run("projects", "list", "--json", env=env).stdout)
    entry = next(p for p in listed if p["name"] == "cli-project")
    assert entry == {"id": project["id"], "name": "cli-project", "token": project["token"]}
    assert "api_secret" not in json.dumps(listed)
    again = run("projects", "create", "cli-project", env=env)
    assert again.returncode == 1 and "exists already" in again.stdout
    rotated = json.loads(run("projects", "rotate-secret", "cli-project", "--json", env=env).stdout)
    assert rotated["api_secret"] != project["api_secret"]
    assert run("projects", "rotate-secret", "no-such-project", env=env).returncode == 1
    graced = json.loads(
        run("projects", "rotate-secret", "cli-project", "--grace", "1h", "--json", env=env).stdout
    )
    assert graced["previous_valid_seconds"] == 3600
    bad = run("projects", "rotate-secret", "cli-project", "--grace", "soon", env=env)
    assert bad.returncode == 2 and "a duration such as 90s, 30m, 1h or 2d" in bad.stderr


@pytest.mark.slow
def test_serve_on_embedded_postgres() -> None:
    """`profilestore serve` without DATABASE_URL: embedded Postgres, migrations, a default project, HTTP."""
    with tempfile.TemporaryDirectory(prefix="profilestore-home-") as home:
        os.chmod(home, 0o755)
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["PROFILESTORE_HOME"] = home
        port = free_port()
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not become ready"
                time.sleep(0.2)
            assert (Path(home) / "pgdata" / "PG_VERSION").exists()
            token = secret = None
            env_with_home = {**env}
            listed = json.loads(run("projects", "list", "--json", env=env_with_home).stdout)
            assert [p["name"] for p in listed] == ["default"]
            token = listed[0]["token"]
            record = {"$token": token, "$distinct_id": "u1", "$set": {"a": 1}}
            assert httpx.post(f"http://127.0.0.1:{port}/engage", json=[record]).text == "1"
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert token is not None and token in out
        assert "api_secret" in out and secret is None
