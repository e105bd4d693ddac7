"""Running the official Node SDK (`mixpanel` on npm) from a script a test writes, and reading rows back.

`install_node_sdk` puts `node_modules/mixpanel` at a pinned version into a cache directory outside the
repository (reused when present).  `run_node` runs a test's JS with that SDK: a prelude records every HTTP
request the SDK makes (method, path, headers, body) and the answer it got, and `step(name, send)` awaits each
SDK callback, so the script ends only when everything it sent has been answered.  The script prints
`{steps, wire}` as JSON.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg

from support import LiveServer

NODE_SDK_VERSION = "0.24.0"
INSTALL_TIMEOUT_SECONDS = 120
Row = dict[str, Any]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "profilestore-tests"


def node_tools_missing() -> str | None:
    """Why the Node SDK tests cannot run here, or None when `node` and `npm` are both on PATH."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not found on PATH: the Node SDK tests need Node.js" if missing else None


def install_node_sdk(version: str = NODE_SDK_VERSION) -> Path:
    """A directory holding `node_modules/mixpanel` at `version`: installed once, then reused.

    The install goes to a fresh sibling directory that is renamed into place, so an interrupted or concurrent
    install never leaves a half-filled directory behind for the next run to trust."""
    target = cache_root() / f"node-mixpanel-{version}"
    if _installed_version(target) == version:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        # A package.json of its own, so npm installs here and not into some package.json further up.
        (staging / "package.json").write_text('{"name": "profilestore-node-sdk-tests", "private": true}\n')
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-update-notifier", f"mixpanel@{version}"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"npm install mixpanel@{version} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        if _installed_version(staging) != version:
            raise RuntimeError(f"npm install did not leave mixpanel {version} in {staging}/node_modules")
        staging.chmod(0o755)  # mkdtemp made it private
        try:
            staging.rename(target)
        except OSError:  # another run won the race (or a stale directory is in the way)
            if _installed_version(target) != version:
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _installed_version(directory: Path) -> str | None:
    try:
        package = json.loads((directory / "node_modules" / "mixpanel" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = package.get("version")
    return version if isinstance(version, str) else None


PRELUDE = r"""
"use strict";
const http = require("http");
const https = require("https");
const Mixpanel = require("mixpanel");
const P = JSON.parse(process.argv[2]);

// Every request the SDK makes, as it went out, and the answer it got.
const wire = [];
for (const lib of [http, https]) {
  const original = lib.request;
  lib.request = function (options, callback) {
    const entry = {
      method: options.method,
      path: options.path,
      headers: { ...options.headers },
      body: "",
      status: null,
      response: null,
      error: null,
    };
    wire.push(entry);
    const req = original.call(this, options, (res) => {
      entry.status = res.statusCode;
      entry.response = "";
      res.on("data", (chunk) => {
        entry.response += chunk;
      });
      if (callback) callback(res);
    });
    req.on("error", (e) => {
      entry.error = String(e && e.message ? e.message : e);
    });
    const write = req.write;
    req.write = function (chunk, ...rest) {
      entry.body += chunk;
      return write.call(this, chunk, ...rest);
    };
    return req;
  };
}

const steps = [];
let current = null;
let finished = false;

function describe(err) {
  if (!err) return null;
  if (Array.isArray(err)) return err.map(describe).join("; ");
  return String(err && err.message ? err.message : err);
}

// Runs one SDK call, `send(callback)`, and waits for its callback; a throw counts as its error.
async function step(name, send) {
  current = name;
  const first = wire.length;
  const error = await new Promise((resolve) => {
    try {
      send((err) => resolve(err));
    } catch (e) {
      resolve(e);
    }
  });
  steps.push({ name, error: describe(error), requests: [first, wire.length] });
  current = null;
}

process.on("exit", () => {
  if (!finished) {
    process.stderr.write(
      `the script ended early: ${current ? `step ${JSON.stringify(current)} never called back` : "?"}\n`,
    );
    process.exitCode = 3;
  }
});
"""

EPILOGUE = r"""
main().then(
  () => {
    finished = true;
    process.stdout.write(JSON.stringify({ steps, wire }));
  },
  (e) => {
    finished = true;
    process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
    process.exitCode = 2;
  },
);
"""


@dataclass
class NodeRun:
    """What a script did: its steps (name, error or None, the index range of its requests) and the wire."""

    steps: list[Row]
    wire: list[Row]
    stderr: str

    def errors(self) -> dict[str, str]:
        return {s["name"]: s["error"] for s in self.steps if s["error"] is not None}

    def requests_of(self, name: str) -> list[Row]:
        (found,) = [s for s in self.steps if s["name"] == name]
        first, end = found["requests"]
        return self.wire[first:end]

    def error_of(self, name: str) -> str | None:
        (found,) = [s for s in self.steps if s["name"] == name]
        return found["error"]

    def report(self, names: list[str] | None = None) -> str:
        """The requests of the named steps (default: the failed ones), decoded, with their answers."""
        names = list(self.errors()) if names is None else names
        lines = []
        for name in names:
            lines.append(f"step {name!r}: error {self.error_of(name)!r}")
            lines.extend("    " + describe_request(entry) for entry in self.requests_of(name))
        return "\n".join(lines)

    def assert_ok(self) -> None:
        assert not self.errors(), "SDK calls failed:\n" + self.report()


def run_node(
    sdk_dir: Path, body: str, params: Row, *, ca_file: Path | None = None, timeout: float = 60
) -> NodeRun:
    """Run `body` (JS defining `async function main()`, with `Mixpanel`, `P` (= params) and `step` in scope)
    with the SDK in `sdk_dir`; fails the test unless node exits 0 having printed its results."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY")}
    env["NODE_PATH"] = str(sdk_dir / "node_modules")
    env.pop("NODE_OPTIONS", None)
    if ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca_file)
    script = PRELUDE + textwrap.dedent(body) + EPILOGUE
    with tempfile.TemporaryDirectory(prefix="profilestore-node-") as tmp:
        path = Path(tmp, "script.js")
        path.write_text(script)
        proc = subprocess.run(
            ["node", str(path), json.dumps(params)],
            cwd=sdk_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert proc.returncode == 0, f"node exited with {proc.returncode}:\n{proc.stderr}\n{proc.stdout[:4000]}"
    results = json.loads(proc.stdout)
    return NodeRun(steps=results["steps"], wire=results["wire"], stderr=proc.stderr)


@dataclass
class HttpsServer:
    """The app over HTTPS, and the file of the throwaway CA that signed its certificate."""

    live: LiveServer
    ca_file: Path

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def port(self) -> int:
        return self.live.port


# --- what the SDK sent --------------------------------------------------------------------------------------


def sent_data(entry: Row) -> Any:
    """The JSON the SDK put into a request: GET `?data=<base64>` or a POST body `data=<base64>` that is not
    URL-encoded (so it is decoded here as sent, `+` and all)."""
    if entry["method"] == "GET":
        value = dict(parse_qsl(urlsplit(entry["path"]).query))["data"]
    else:
        body = entry["body"]
        assert body.startswith("data="), body[:80]
        value = body[len("data=") :]
    return json.loads(base64.b64decode(value, validate=True))


def describe_request(entry: Row) -> str:
    query = [(k, v) for k, v in parse_qsl(urlsplit(entry["path"]).query) if k != "data"]
    headers = {k: v for k, v in entry["headers"].items() if k.lower() in ("authorization", "content-type")}
    try:
        data = json.dumps(sent_data(entry))
    except (KeyError, ValueError, AssertionError):
        data = repr(entry["body"][:200])
    if len(data) > 600:
        data = data[:600] + "..."
    answer = entry["error"] or f"{entry['status']} {entry['response']!r}"
    return (
        f"{entry['method']} {urlsplit(entry['path']).path} ({len(entry['path'])} bytes of URL,"
        f" {len(entry['body'])} of body) query={query} headers={headers} data={data} -> {answer}"
    )


# --- rows ---------------------------------------------------------------------------------------------------


def profile_rows(db: psycopg.Connection[Row], project_id: int) -> dict[str, Row]:
    """distinct_id -> {properties, last_seen (epoch seconds or None)}."""
    rows = db.execute(
        "SELECT distinct_id, properties, extract(epoch FROM last_seen)::float8 AS last_seen"
        " FROM profiles WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    return {r["distinct_id"]: {"properties": r["properties"], "last_seen": r["last_seen"]} for r in rows}


def group_rows(db: psycopg.Connection[Row], project_id: int) -> dict[tuple[str, str], Row]:
    """(group_key, group_id) -> {properties, last_seen (epoch seconds or None)}."""
    rows = db.execute(
        "SELECT group_key, group_id, properties, extract(epoch FROM last_seen)::float8 AS last_seen"
        " FROM group_profiles WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    return {
        (r["group_key"], r["group_id"]): {"properties": r["properties"], "last_seen": r["last_seen"]}
        for r in rows
    }


def event_rows(db: psycopg.Connection[Row], project_id: int) -> list[Row]:
    """The project's events, oldest first: event, distinct_id, time (epoch seconds), insert_id, properties."""
    return db.execute(
        "SELECT event, distinct_id, extract(epoch FROM time)::float8 AS time, insert_id, properties"
        " FROM events WHERE project_id = %s ORDER BY time, event, distinct_id, insert_id",
        (project_id,),
    ).fetchall()


def seen_of(db: psycopg.Connection[Row], project_id: int) -> dict[str, tuple[float, float]]:
    """users_seen: distinct_id -> (first_seen, last_seen) in epoch seconds."""
    rows = db.execute(
        "SELECT distinct_id, extract(epoch FROM first_seen)::float8 AS first,"
        " extract(epoch FROM last_seen)::float8 AS last FROM users_seen WHERE project_id = %s",
        (project_id,),
    ).fetchall()
    return {r["distinct_id"]: (r["first"], r["last"]) for r in rows}
