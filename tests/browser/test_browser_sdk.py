"""The official browser SDK, `mixpanel-browser` from npm, end to end in Debian's Chromium (Playwright).

A page served from another port than the API (so every request is cross-origin, with credentials) loads the
SDK's standalone UMD build with `api_host` pointed at a test server, calls `identify`, `people.set`,
`people.increment`, `track` and `get_group(...).set`, and the test reads the rows back from Postgres.
It runs in the SDK's three ways of sending: batched XHR (its default: `verbose=1` batches from a
localStorage queue), one XHR per call, and `sendBeacon` (`text/plain` bodies); and once more for the beacon
that flushes the batch queue when the page goes away.

The server is wrapped in an ASGI recorder, so every request that reached it (preflights and beacons included)
is checked for a successful answer, and `-s` prints them.

Needs /usr/bin/chromium (`apt-get install -y chromium`) and npm; the SDK is installed once into
~/.cache/profilestore-tests/ and reused.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

from support import LiveServer, make_settings, new_project, profiles_of

Row = dict[str, Any]

MIXPANEL_BROWSER_VERSION = "2.83.0"
CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: these keep Chromium from trying its background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE_SECONDS = 15.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium)",
)


# --- the SDK from npm -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sdk_js() -> bytes:
    """mixpanel-browser's standalone UMD build (defines window.mixpanel without a bundler)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "profilestore-tests"
    home = cache / f"browser-mixpanel-{MIXPANEL_BROWSER_VERSION}"
    umd = home / "node_modules" / "mixpanel-browser" / "dist" / "mixpanel.umd.js"
    if not umd.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is absent: it installs mixpanel-browser from the npm registry")
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text('{"private": true}\n')
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"mixpanel-browser@{MIXPANEL_BROWSER_VERSION}"],
            cwd=home,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return umd.read_bytes()


# --- a static page on another origin ----------------------------------------------------------------------

INDEX_HTML = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>profilestore browser SDK test</title>
<script src="/mixpanel.umd.js"></script></head>
<body><p>mixpanel-browser test page</p></body></html>
"""


@pytest.fixture(scope="module")
def page_origin(sdk_js: bytes) -> Iterator[str]:
    files = {
        "/": ("text/html; charset=utf-8", INDEX_HTML),
        "/mixpanel.umd.js": ("text/javascript; charset=utf-8", sdk_js),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/favicon.ico":
                self.send_response(204)
                self.end_headers()
                return
            found = files.get(self.path.split("?", 1)[0])
            if found is None:
                self.send_error(404)
                return
            content_type, body = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            thread.join(10)


# --- the API server, with a log of what reached it --------------------------------------------------------


@dataclass
class Exchange:
    method: str
    target: str
    content_type: str
    origin: str
    body: bytearray = field(default_factory=bytearray)
    status: int = 0
    allow_origin: str = ""
    allow_credentials: str = ""
    answer: bytearray = field(default_factory=bytearray)

    def line(self) -> str:
        cors = f" ACAO={self.allow_origin!r} ACAC={self.allow_credentials!r}" if self.origin else ""
        return (
            f"{self.method} {self.target} [{self.content_type or '-'}] body={bytes(self.body[:90])!r}"
            f" -> {self.status} {bytes(self.answer[:80])!r}{cors}"
        )


class Recorder:
    """ASGI middleware: one `Exchange` per HTTP request that the app answered."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log: list[Exchange] = []

    async def __call__(self, scope: Any, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope["query_string"].decode("latin-1")
        exchange = Exchange(
            method=scope["method"],
            target=scope["path"] + (f"?{query}" if query else ""),
            content_type=headers.get("content-type", ""),
            origin=headers.get("origin", ""),
        )
        self.log.append(exchange)

        async def receive_recorded() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                exchange.body += message.get("body", b"")
            return message

        async def send_recorded(message: Any) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                answer_headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]
                }
                exchange.allow_origin = answer_headers.get("access-control-allow-origin", "")
                exchange.allow_credentials = answer_headers.get("access-control-allow-credentials", "")
            elif message["type"] == "http.response.body":
                exchange.answer += message.get("body", b"")
            await send(message)

        await self.app(scope, receive_recorded, send_recorded)


@pytest.fixture(scope="module")
def recorded_server(database_url: str) -> Iterator[tuple[LiveServer, Recorder]]:
    live = LiveServer(database_url, make_settings())
    recorder = Recorder(live.server.config.app)
    live.server.config.app = recorder  # uvicorn loads config.app when it starts
    with live:
        yield live, recorder


@pytest.fixture
def project(database_url: str) -> Row:
    """As tests/conftest.py's, made in a thread: Playwright's sync API keeps an event loop running in this
    one, where `new_project`'s asyncio.run() cannot start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(new_project, database_url).result()


# --- the browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class BrowserLog:
    """What the page saw: its requests (from Playwright), console errors and the SDK's error reports."""

    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Browser, page_origin: str) -> Iterator[tuple[Page, BrowserLog]]:
    context = browser.new_context()
    page = context.new_page()
    log = BrowserLog()

    def on_response(response: Response) -> None:
        request = response.request
        if request.url.startswith(page_origin):
            return
        body = (request.post_data_buffer or b"")[:60]
        content_type = request.headers.get("content-type", "-")
        log.requests.append(f"{request.method} {request.url} [{content_type}] {body!r} -> {response.status}")

    def on_failed(request: Request) -> None:
        log.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.problems.append(f"console error: {message.text}")

    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    page.on("pageerror", lambda error: log.problems.append(f"page error: {error}"))
    page.goto(page_origin + "/")
    try:
        yield page, log
    finally:
        context.close()


# The calls every test makes, in the page; resolves with what the SDK's callbacks got.
RUN_SDK = """
async ({token, config}) => {
  window.__sdkErrors = [];
  const results = {};
  const B64 = "~~~~~~??????";  // base64 of a run of ~ has a +, of ? a /: percent-encoded %2B and %2F
  await new Promise((resolve) => mixpanel.init(token, {
    ...config,
    debug: true,
    error_reporter: (message, error) => window.__sdkErrors.push(String(message) + ": " + String(error)),
    loaded: resolve,
  }));
  const call = (name, invoke) => new Promise((resolve) => invoke((response) => {
    results[name] = response;
    resolve();
  }));
  await call("identify", (done) => { mixpanel.identify("u-browser"); done(null); });
  await call("people.set", (done) => mixpanel.people.set(
    {plan: "pro", seats: 3, "$email": "u@example.com", nested: {a: [1, "two"]}, "naïve ✓": "ü", b64: B64},
    done));
  await call("people.increment", (done) => mixpanel.people.increment("n", 2, done));
  await call("set_group", (done) => mixpanel.set_group("company", "acme", done));
  await call("group.set", (done) =>
    mixpanel.get_group("company", "acme").set({name: "Acme", size: 12}, done));
  await call("track", (done) =>
    mixpanel.track("Clicked", {button: "buy", price: 9.99, "plus+slash/": "a+b/c", b64: B64}, done));
  return results;
}
"""


def poll(
    what: str,
    read: Callable[[], Any],
    ready: Callable[[Any], bool],
    log: Callable[[], str],
    wait: Callable[[float], None] = time.sleep,
) -> Any:
    """read() until ready(value), for at most DEADLINE_SECONDS.  While a page is open, `wait(seconds)` must
    call its wait_for_timeout: Playwright's sync API delivers the page's events only inside its own calls."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = read()
        if ready(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not in the database after {DEADLINE_SECONDS:.0f} s; requests:\n{log()}")
        wait(0.1)


def groups_of(db: psycopg.Connection[Row], project_id: int) -> dict[tuple[str, str], Row]:
    rows = db.execute(
        "SELECT group_key, group_id, properties FROM group_profiles WHERE project_id = %s", (project_id,)
    ).fetchall()
    return {(r["group_key"], r["group_id"]): r["properties"] for r in rows}


def events_of(db: psycopg.Connection[Row], project_id: int) -> list[Row]:
    return db.execute(
        "SELECT event, distinct_id, extract(epoch FROM time)::float8 AS time, insert_id, properties"
        " FROM events WHERE project_id = %s ORDER BY time",
        (project_id,),
    ).fetchall()


def report(title: str, exchanges: list[Exchange], browser_log: BrowserLog) -> str:
    lines = [f"== {title}: {len(exchanges)} requests reached the server"]
    lines += ["  " + e.line() for e in exchanges]
    lines += [f"  browser saw {len(browser_log.requests)} requests to the API"]
    lines += ["    " + r for r in browser_log.requests]
    lines += ["  problem: " + p for p in browser_log.problems]
    return "\n".join(lines)


def assert_answered_well(exchanges: list[Exchange], origin: str) -> None:
    """Every request got a success, with CORS for credentials; every POST carried a base64 `data` field."""
    assert exchanges
    for e in exchanges:
        assert e.status in (200, 204), e.line()
        assert e.allow_origin == origin and e.allow_credentials == "true", (
            f"CORS with credentials: {e.line()}"
        )
        if e.method == "POST":
            assert json.loads(e.answer) in (1, {"status": 1, "error": None}), e.line()
            query = parse_qs(urlsplit(e.target).query)
            assert query.get("ip") == ["1"] and "_" in query, e.line()
            (data,) = parse_qs(e.body.decode("ascii"))["data"]  # percent-encoded: a + comes as %2B
            assert isinstance(json.loads(base64.b64decode(data, validate=True)), (dict, list)), e.line()


MODES: dict[str, Row] = {
    # the SDK's default: queued in localStorage, flushed as verbose=1 batches (a shorter interval here)
    "batched-xhr": {"batch_requests": True, "batch_flush_interval_ms": 100},
    # a custom header makes each XHR non-simple: the browser sends a CORS preflight first
    "batched-xhr-preflight": {
        "batch_requests": True,
        "batch_flush_interval_ms": 100,
        "xhr_headers": {"X-Profilestore-Test": "1"},
    },
    "xhr": {"batch_requests": False, "api_transport": "XHR"},
    "beacon": {"batch_requests": False, "api_transport": "sendBeacon"},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_browser_sdk_calls_land(
    mode: str,
    page: tuple[Page, BrowserLog],
    page_origin: str,
    recorded_server: tuple[LiveServer, Recorder],
    project: Row,
    db: psycopg.Connection[Row],
) -> None:
    tab, browser_log = page
    live, recorder = recorded_server
    first = len(recorder.log)
    config = {"api_host": live.url, **MODES[mode]}
    results = tab.evaluate(RUN_SDK, {"token": project["token"], "config": config})

    def mine() -> list[Exchange]:
        return recorder.log[first:]

    def dump() -> str:
        return report(mode, mine(), browser_log)

    def pump(seconds: float) -> None:
        tab.wait_for_timeout(seconds * 1000)

    expected = {
        "plan": "pro",
        "seats": 3,
        "$email": "u@example.com",
        "nested": {"a": [1, "two"]},
        "naïve ✓": "ü",
        "n": 2,
        "company": ["acme"],
        "b64": "~~~~~~??????",
    }
    # Every update has landed (with sendBeacon the page gets no answers and the requests may arrive in any
    # order, so wait for all of them, not for the last one sent).
    profile = poll(
        "the profile",
        lambda: profiles_of(db, project["id"]).get("u-browser"),
        lambda p: p is not None and all(k in p["properties"] for k in expected),
        dump,
        pump,
    )
    group = poll("the group profile", lambda: groups_of(db, project["id"]), bool, dump, pump)
    events = poll(
        "the $identify and Clicked events",
        lambda: events_of(db, project["id"]),
        lambda rows: {"$identify", "Clicked"} <= {r["event"] for r in rows},
        dump,
        pump,
    )
    pump(0.3)  # the last answers reach the page, and Playwright's events reach the log
    print("\n" + dump())
    print(f"  SDK callbacks: {results}")

    properties = profile["properties"]
    assert {k: properties.get(k) for k in expected} == expected
    assert properties.get("$browser") == "Chrome"  # the SDK's own people properties
    assert group == {("company", "acme"): {"name": "Acme", "size": 12}}

    clicked = [r for r in events if r["event"] == "Clicked"]
    assert len(clicked) == 1, events
    assert clicked[0]["distinct_id"] == "u-browser"
    assert abs(clicked[0]["time"] - time.time()) < 60
    assert clicked[0]["insert_id"] == clicked[0]["properties"]["$insert_id"]
    sent = {k: clicked[0]["properties"].get(k) for k in ("button", "price", "plus+slash/", "b64", "company")}
    assert sent == {
        "button": "buy",
        "price": 9.99,
        "plus+slash/": "a+b/c",
        "b64": "~~~~~~??????",
        "company": ["acme"],
    }
    assert any(r["event"] == "$identify" and r["distinct_id"] == "u-browser" for r in events)

    assert_answered_well(mine(), page_origin)
    assert browser_log.problems == [], dump()
    assert tab.evaluate("window.__sdkErrors") == []
    # the callbacks: 1 once enqueued (batched), once sent (beacon), or the server's answer through CORS (xhr)
    assert results == {"identify": None, **dict.fromkeys(list(results)[1:], 1)}
    posts = [e for e in mine() if e.method == "POST"]
    preflights = [e for e in mine() if e.method == "OPTIONS"]
    assert {urlsplit(e.target).path for e in posts} == {"/track/", "/engage/", "/groups/"}
    assert any(b"%2B" in e.body and b"%2F" in e.body for e in posts if e.target.startswith("/track/"))
    assert all(("verbose=1" in e.target) == mode.startswith("batched") for e in posts), dump()
    if mode == "beacon":
        assert all(e.content_type == "text/plain;charset=UTF-8" for e in posts), dump()
    else:
        assert all(e.content_type == "application/x-www-form-urlencoded" for e in posts), dump()
    if mode == "batched-xhr-preflight":
        assert preflights, dump()
    else:
        assert preflights == [], dump()


def test_queue_flushed_by_beacon_when_page_goes_away(
    page: tuple[Page, BrowserLog],
    page_origin: str,
    recorded_server: tuple[LiveServer, Recorder],
    project: Row,
    db: psycopg.Connection[Row],
) -> None:
    """Batched events still queued when the page is hidden go out in a sendBeacon (text/plain, verbose=1)."""
    tab, browser_log = page
    live, recorder = recorded_server
    first = len(recorder.log)
    config = {"api_host": live.url, "batch_requests": True, "batch_flush_interval_ms": 600_000}
    tab.evaluate(
        """async ({token, config}) => {
             await new Promise((resolve) => mixpanel.init(token, {...config, loaded: resolve}));
             mixpanel.identify("u-leaving");
             await new Promise((resolve) => mixpanel.track("Left", {why: "closed"}, resolve));
           }""",
        {"token": project["token"], "config": config},
    )
    tab.wait_for_timeout(200)
    assert events_of(db, project["id"]) == []  # still queued
    tab.close(run_before_unload=True)

    def dump() -> str:
        return report("unload beacon", recorder.log[first:], browser_log)

    events = poll(
        "the Left event",
        lambda: events_of(db, project["id"]),
        lambda rows: any(r["event"] == "Left" for r in rows),
        dump,
    )
    print("\n" + dump())
    assert {(r["event"], r["distinct_id"]) for r in events} == {
        ("Left", "u-leaving"),
        ("$identify", "u-leaving"),
    }
    (beacon,) = recorder.log[first:]
    assert beacon.method == "POST" and beacon.target.startswith("/track/?verbose=1&"), dump()
    assert beacon.content_type == "text/plain;charset=UTF-8", dump()
    assert_answered_well(recorder.log[first:], page_origin)
