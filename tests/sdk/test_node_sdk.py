"""The official Node SDK (`mixpanel` on npm, pinned in node_support.py) against the service, end to end.

Each test writes a small script, runs it with the machine's `node`, waits for every SDK callback and reads the
rows back from Postgres.  What the SDK sends (lib/mixpanel-node.js, lib/people.js, lib/profile_helpers.js):
* every single call (`people.*`, `groups.*`, `track`, `import`) is a GET `?ip=0&verbose=0&data=<base64 JSON>`;
* `track_batch` / `import_batch` POST `data=<base64 JSON>` as a form body that is *not* URL-encoded, 50 events
  a request, the requests in parallel;
* with `secret` it sends `Authorization: Basic base64(secret:)` on every request and refuses plain HTTP,
  hence the HTTPS server (a throwaway trustme CA, given to node as NODE_EXTRA_CA_CERTS);
* dates (`time`, `$time`) go out as epoch milliseconds; it checks that the answer is `1` (or, with
  `verbose: true`, `{"status": 1}`) and passes an Error to the callback otherwise.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from node_support import (
    NODE_SDK_VERSION,
    HttpsServer,
    event_rows,
    group_rows,
    profile_rows,
    run_node,
    seen_of,
    sent_data,
)

from support import LiveServer

Row = dict[str, Any]

T = 1732300000.5  # 2024-11-22T18:26:40.5Z: a past time with a fraction that milliseconds carry exactly
SDK_PROPS = {"mp_lib": "node", "$lib_version": NODE_SDK_VERSION}


def http_config(server: LiveServer) -> Row:
    return {"host": "127.0.0.1", "port": server.port, "protocol": "http"}


def https_config(server: HttpsServer, **extra: Any) -> Row:
    return {"host": "127.0.0.1", "port": server.port, "protocol": "https", **extra}


# --- people -------------------------------------------------------------------------------------------------

PEOPLE_CALLS = """
async function main() {
  const people = Mixpanel.init(P.token, P.config).people;
  await step("set", (cb) => people.set("u1", { name: "Ada", plan: "free", tags: ["a"], score: 1 }, cb));
  await step("set one property", (cb) => people.set("u1", "city", "Paris", cb));
  await step("set_once", (cb) => people.set_once("u1", { plan: "enterprise", first_seen_via: "ads" }, cb));
  await step("set_once one property", (cb) => people.set_once("u1", "plan", "x", cb));
  await step("increment", (cb) => people.increment("u1", { score: 2, visits: 1 }, cb));
  await step("increment by the default 1", (cb) => people.increment("u1", "visits", cb));
  await step("decrement", (cb) => people.increment("u1", "score", -0.5, cb));
  await step("append", (cb) => people.append("u1", { tags: "b", log: "x" }, cb));
  await step("append one property", (cb) => people.append("u1", "tags", "b", cb));
  await step("union", (cb) => people.union("u1", { tags: ["a", "c"], langs: "en" }, cb));
  await step("remove", (cb) => people.remove("u1", { tags: "b" }, cb));
  await step("unset a list", (cb) => people.unset("u1", ["name", "missing"], cb));
  await step("unset one", (cb) => people.unset("u1", "city", cb));
  await step("set u2", (cb) => people.set("u2", { a: 1 }, cb));
  await step("delete_user", (cb) => people.delete_user("u2", cb));
  await step("set u3", (cb) => people.set("u3", { a: 1 }, cb));
  await step("delete_user $ignore_alias", (cb) => people.delete_user("u3", { $ignore_alias: true }, cb));
  await step("remove on no profile", (cb) => people.remove("u4", { tags: "x" }, cb));
  await step("unset on no profile", (cb) => people.unset("u5", "x", cb));
  await step("numeric distinct_id", (cb) => people.set(12345, { kind: "numeric" }, cb));
  await step("unicode distinct_id", (cb) => people.set("zoë 😀", { city: "Zürich" }, cb));
}
"""


def test_people_calls(node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]) -> None:
    """Every `people.*` call, each its own GET; the `host: "127.0.0.1:PORT"` form of the config."""
    config = {"host": f"127.0.0.1:{server.port}", "protocol": "http"}
    before = time.time()
    run = run_node(node_sdk, PEOPLE_CALLS, {"token": project["token"], "config": config})
    after = time.time()
    run.assert_ok()
    assert {(r["method"], r["path"].split("?")[0]) for r in run.wire} == {("GET", "/engage")}
    assert sent_data(run.requests_of("union")[0])["$union"] == {"tags": ["a", "c"], "langs": ["en"]}

    profiles = profile_rows(db, project["id"])
    assert profiles["u1"]["properties"] == {
        "plan": "free",
        "first_seen_via": "ads",
        "score": 2.5,
        "visits": 2,
        "tags": ["a", "c"],
        "log": ["x"],
        "langs": ["en"],
    }
    assert isinstance(profiles["u1"]["properties"]["visits"], int)
    assert before - 1 <= profiles["u1"]["last_seen"] <= after + 1
    assert profiles["12345"]["properties"] == {"kind": "numeric"}
    assert profiles["zoë 😀"]["properties"] == {"city": "Zürich"}
    assert sorted(profiles) == ["12345", "u1", "zoë 😀"]  # u2, u3 deleted; $remove/$unset never create u4, u5


PEOPLE_MODIFIERS = """
async function main() {
  const people = Mixpanel.init(P.token, P.config).people;
  const T = P.t;
  const atT = { $time: new Date(T * 1000) };
  await step("set at T (a Date)", (cb) => people.set("m1", { plan: "pro" }, atT, cb));
  await step(
    "older set (seconds)",
    (cb) => people.set("m1", { plan: "free", extra: 1 }, { $time: T - 3600 }, cb),
  );
  await step("$ignore_time inside the $set", (cb) => people.set("m1", { b: 2, $ignore_time: true }, cb));
  await step("increment $ignore_time", (cb) => people.increment("m1", { n: 1 }, { $ignore_time: true }, cb));
  await step("append $ignore_time", (cb) => people.append("m1", { l: 1 }, { $ignore_time: true }, cb));
  await step("union $ignore_time", (cb) => people.union("m1", { l: [1, "1"] }, { $ignore_time: true }, cb));
  await step("older unset", (cb) => people.unset("m1", "plan", { $time: new Date((T - 7200) * 1000) }, cb));
  await step("set_once at T", (cb) => people.set_once("m1", { first: "a" }, { $time: T - 10 }, cb));
  await step("earlier set_once", (cb) => people.set_once("m1", { first: "b" }, { $time: T - 20 }, cb));
  await step("set ip", (cb) => people.set("m2", { ip: "203.0.113.9", c: 3 }, { $time: T }, cb));
  await step("set $ip modifier", (cb) => people.set("m3", { d: 4 }, { $ip: "0", $time: T }, cb));
  await step(
    "set $latitude/$longitude",
    (cb) => people.set("m4", { e: 5 }, { $latitude: 52.5, $longitude: 13.4, $time: T }, cb),
  );
  await step("delete at T - 1", (cb) => people.delete_user("m5", { $time: T - 1 }, cb));
  await step("set older than the delete", (cb) => people.set("m5", { f: 6 }, { $time: T - 2 }, cb));
}
"""


def test_people_modifiers(
    node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """`$time` (Date: milliseconds; number: as given), `$ignore_time`, `$ip`, `$latitude`/`$longitude`."""
    run = run_node(
        node_sdk, PEOPLE_MODIFIERS, {"token": project["token"], "config": http_config(server), "t": T}
    )
    run.assert_ok()
    assert sent_data(run.requests_of("set at T (a Date)")[0])["$time"] == 1732300000500
    assert sent_data(run.requests_of("set ip")[0]) == {
        "$token": project["token"],
        "$distinct_id": "m2",
        "$set": {"c": 3},
        "$ip": "203.0.113.9",
        "$time": T,
    }
    assert sent_data(run.requests_of("$ignore_time inside the $set")[0])["$ignore_time"] is True

    profiles = profile_rows(db, project["id"])
    assert profiles["m1"] == {
        "properties": {"plan": "pro", "extra": 1, "b": 2, "n": 1, "l": [1, "1"], "first": "b"},
        "last_seen": pytest.approx(T),
    }
    assert profiles["m2"] == {"properties": {"c": 3}, "last_seen": pytest.approx(T)}
    assert profiles["m3"] == {"properties": {"d": 4}, "last_seen": pytest.approx(T)}
    assert profiles["m4"] == {"properties": {"e": 5}, "last_seen": pytest.approx(T)}
    assert "m5" not in profiles  # older than the profile's deletion: dropped


CHARGES = """
async function main() {
  const people = Mixpanel.init(P.token, P.config).people;
  if (P.phase === 1) {
    await step("set", (cb) => people.set("buyer", { name: "Bo" }, cb));
    await step(
      "track_charge with a Date",
      (cb) => people.track_charge("buyer", 9.99, { $time: new Date("2024-11-22T10:00:00Z"), sku: "A1" }, cb),
    );
    await step("track_charge of a string amount", (cb) => people.track_charge("buyer", "20", cb));
  } else {
    await step("clear_charges", (cb) => people.clear_charges("buyer", cb));
  }
}
"""


def test_track_charge_and_clear_charges(
    node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """`track_charge` appends to `$transactions`; the Node SDK's `clear_charges` $sets it to [] (the Python
    SDK's $unsets it)."""
    params = {"token": project["token"], "config": http_config(server)}
    run_node(node_sdk, CHARGES, {**params, "phase": 1}).assert_ok()
    assert profile_rows(db, project["id"])["buyer"]["properties"] == {
        "name": "Bo",
        "$transactions": [
            {"$time": "2024-11-22T10:00:00.000Z", "sku": "A1", "$amount": 9.99},
            {"$amount": 20},
        ],
    }
    run_node(node_sdk, CHARGES, {**params, "phase": 2}).assert_ok()
    assert profile_rows(db, project["id"])["buyer"]["properties"] == {"name": "Bo", "$transactions": []}


ERRORS = """
async function main() {
  const mp = Mixpanel.init(P.token, { ...P.config, verbose: true });
  await step("verbose set", (cb) => mp.people.set("v1", { a: 1 }, cb));
  await step("string increment", (cb) => mp.people.increment("v1", { n: "5" }, cb));
  await step("increment of a word", (cb) => mp.people.increment("v1", { n: "five" }, cb));
  await step("increment of a word, new id", (cb) => mp.people.increment("v3", { n: "five" }, cb));
  const unknown = Mixpanel.init("no-such-token", { ...P.config, verbose: true });
  await step("unknown token, verbose", (cb) => unknown.people.set("v2", { a: 1 }, cb));
  const quiet = Mixpanel.init("no-such-token", P.config);
  await step("unknown token, not verbose", (cb) => quiet.people.set("v2", { a: 1 }, cb));
  await step("unknown token, group", (cb) => unknown.groups.set("company", "acme", { a: 1 }, cb));
}
"""


def test_verbose_answers_and_refusals(
    node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """With `verbose: true` the SDK reads `{"status", "error"}`: a refused update reaches the callback as an
    Error naming the field and the rule; without it, an answer other than `1` is an Error too."""
    run = run_node(node_sdk, ERRORS, {"token": project["token"], "config": http_config(server)})
    assert "verbose=1" in run.requests_of("verbose set")[0]["path"]
    assert run.error_of("verbose set") is None
    # The SDK checks only that the value parses as a number, and sends the string: refused, and said so.
    assert sent_data(run.requests_of("string increment")[0])["$add"] == {"n": "5"}
    error = run.error_of("string increment")
    assert error is not None and "$add.n" in error and "must be a number" in error, run.report()
    # A value that is not a number at all the SDK drops, and sends `$add: {}`: accepted, nothing to apply.
    # (docs/ingest.md does not say whether such an update creates an absent profile; today it does, empty.)
    assert sent_data(run.requests_of("increment of a word")[0])["$add"] == {}
    assert run.error_of("increment of a word") is None
    assert run.error_of("increment of a word, new id") is None
    assert "unknown project token" in (run.error_of("unknown token, verbose") or "")
    assert run.error_of("unknown token, not verbose") == "Mixpanel Server Error: 0"
    assert "unknown project token" in (run.error_of("unknown token, group") or "")
    profiles = {d: p["properties"] for d, p in profile_rows(db, project["id"]).items()}
    assert profiles.pop("v3", {}) == {}
    assert profiles == {"v1": {"a": 1}}


LARGE = """
async function main() {
  const mp = Mixpanel.init(P.token, P.config);
  for (const n of P.sizes) {
    await step(`people.set ${n}`, (cb) => mp.people.set("big", { ["p" + n]: "x".repeat(n) }, cb));
    const props = { distinct_id: "big", $insert_id: `big-${n}`, blob: "y".repeat(n) };
    await step(`track ${n}`, (cb) => mp.track("Big", props, cb));
  }
}
"""


def test_large_single_calls(
    node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """Single calls are GETs carrying the record in the URL, as base64 (4/3 of its JSON).  docs/ingest.md
    allows
    1 MB a record (and 256 KB a list or object value): records of 40 KB and 200 KB are well inside it."""
    sizes = [40_000, 200_000]
    run = run_node(
        node_sdk, LARGE, {"token": project["token"], "config": http_config(server), "sizes": sizes}
    )
    run.assert_ok()
    assert sorted(profile_rows(db, project["id"])["big"]["properties"]) == ["p200000", "p40000"]
    blobs = sorted(len(r["properties"]["blob"]) for r in event_rows(db, project["id"]))
    assert blobs == sizes


# --- groups -------------------------------------------------------------------------------------------------

GROUP_CALLS = """
async function main() {
  const groups = Mixpanel.init(P.token, P.config).groups;
  await step("set", (cb) => groups.set("company", "acme", { plan: "pro", seats: 3 }, cb));
  await step("set one property", (cb) => groups.set("company", "acme", "region", "eu", cb));
  await step("set_once", (cb) => groups.set_once("company", "acme", { plan: "free", founded: 2001 }, cb));
  await step("set_once one property", (cb) => groups.set_once("company", "acme", "region", "us", cb));
  await step("union", (cb) => groups.union("company", "acme", { tags: ["b2b", "eu"] }, cb));
  await step("union of a scalar", (cb) => groups.union("company", "acme", { tags: "smb" }, cb));
  await step("remove", (cb) => groups.remove("company", "acme", { tags: "eu" }, cb));
  await step("unset one", (cb) => groups.unset("company", "acme", "seats", cb));
  await step("older set", (cb) => groups.set("company", "acme", { plan: "old", x: 1 }, { $time: P.t }, cb));
  await step("older unset", (cb) => groups.unset("company", "acme", "region", { $time: P.t }, cb));
  await step("numeric group_id", (cb) => groups.set("company", 42, { name: "numeric id" }, cb));
  await step("set gone", (cb) => groups.set("company", "gone", { x: 1 }, cb));
  await step("delete_group", (cb) => groups.delete_group("company", "gone", cb));
  await step("same id, other key", (cb) => groups.set("team", "acme", { size: 5, lead: "Ada" }, cb));
  await step("unset a list", (cb) => groups.unset("team", "acme", ["size", "missing"], cb));
  await step("set at T", (cb) => groups.set("team", "core", { a: 1 }, { $time: new Date(P.t * 1000) }, cb));
  await step("remove on no group", (cb) => groups.remove("team", "nobody", { tags: "x" }, cb));
}
"""


def test_group_calls(node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]) -> None:
    run = run_node(node_sdk, GROUP_CALLS, {"token": project["token"], "config": http_config(server), "t": T})
    run.assert_ok()
    assert {(r["method"], r["path"].split("?")[0]) for r in run.wire} == {("GET", "/groups")}
    assert sent_data(run.requests_of("numeric group_id")[0])["$group_id"] == 42

    found = group_rows(db, project["id"])
    assert {k: v["properties"] for k, v in found.items()} == {
        ("company", "acme"): {"plan": "pro", "region": "eu", "founded": 2001, "tags": ["b2b", "smb"], "x": 1},
        ("company", "42"): {"name": "numeric id"},
        ("team", "acme"): {"lead": "Ada"},
        ("team", "core"): {"a": 1},
    }
    assert found[("team", "core")]["last_seen"] == pytest.approx(T)
    assert profile_rows(db, project["id"]) == {}


# --- events -------------------------------------------------------------------------------------------------

TRACK = """
async function main() {
  const mp = Mixpanel.init(P.token, P.config);
  const first = {
    distinct_id: "u1",
    time: new Date(P.t * 1000),
    $insert_id: "ins-1",
    plan: "pro",
    n: { a: [1, 2] },
  };
  await step("track with a Date", (cb) => mp.track("Signed up", { ...first }, cb));
  await step("track retried", (cb) => mp.track("Signed up", { ...first }, cb));
  await step(
    "track with seconds",
    (cb) => mp.track("Page view", { distinct_id: "u1", time: P.seconds, $insert_id: "ins-2", page: "/" }, cb),
  );
  await step("track without time", (cb) => mp.track("Opened", { distinct_id: "u2" }, cb));
  await step("track without properties", (cb) => mp.track("Anonymous ping", cb));
  await step("alias", (cb) => mp.alias("u1", "ada@example.com", cb));
  await step("track with a numeric distinct_id", (cb) => mp.track("Opened", { distinct_id: 42 }, cb));
}
"""


def test_track(node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]) -> None:
    """`track` (a GET each): `time` as a Date (sent as milliseconds) and as seconds, `$insert_id` (a retry is
    one event), no time (the time of receipt), no distinct_id (an event with no user), and `alias`."""
    now = time.time()
    t = round(now - 86400, 3)
    seconds = int(now - 7200)
    params = {"token": project["token"], "config": http_config(server), "t": t, "seconds": seconds}
    run = run_node(node_sdk, TRACK, params)
    after = time.time()
    run.assert_ok()
    assert {(r["method"], r["path"].split("?")[0]) for r in run.wire} == {("GET", "/track")}
    assert sent_data(run.requests_of("track with a Date")[0])["properties"]["time"] == round(t * 1000)

    rows = event_rows(db, project["id"])
    received = [r for r in rows if r["time"] > now - 60]
    old = [r for r in rows if r["time"] <= now - 60]
    assert old == [
        {
            "event": "Signed up",
            "distinct_id": "u1",
            "time": pytest.approx(t, abs=1e-6),
            "insert_id": "ins-1",
            "properties": {
                "distinct_id": "u1",
                "time": round(t * 1000),
                "$insert_id": "ins-1",
                "plan": "pro",
                "n": {"a": [1, 2]},
                **SDK_PROPS,
            },
        },
        {
            "event": "Page view",
            "distinct_id": "u1",
            "time": seconds,
            "insert_id": "ins-2",
            "properties": {
                "distinct_id": "u1",
                "time": seconds,
                "$insert_id": "ins-2",
                "page": "/",
                **SDK_PROPS,
            },
        },
    ]
    by_event = {(r["event"], r["distinct_id"]): r for r in received}
    assert sorted(by_event) == [
        ("$create_alias", "u1"),
        ("Anonymous ping", ""),
        ("Opened", "42"),
        ("Opened", "u2"),
    ]
    for row in received:
        assert now - 1 <= row["time"] <= after + 1
        assert row["insert_id"] is None
    assert by_event[("Opened", "u2")]["properties"] == {"distinct_id": "u2", **SDK_PROPS}
    assert by_event[("Opened", "42")]["properties"] == {"distinct_id": 42, **SDK_PROPS}
    assert by_event[("Anonymous ping", "")]["properties"] == SDK_PROPS
    assert by_event[("$create_alias", "u1")]["properties"] == {
        "distinct_id": "u1",
        "alias": "ada@example.com",
        **SDK_PROPS,
    }
    # "All Users": everyone with an event, the event with no user aside.
    seen = seen_of(db, project["id"])
    assert sorted(seen) == ["42", "u1", "u2"]
    assert seen["u1"][0] == pytest.approx(t, abs=1e-6)
    assert now - 1 <= seen["u1"][1] <= after + 1


BATCH = """
function makeEvents() {
  // Even events carry their time as a Date (the SDK sends milliseconds), odd ones as float seconds.
  return P.events.map((e, i) => ({
    event: e.event,
    properties: {
      ...e.properties,
      time: i % 2 === 0 ? new Date(e.properties.time * 1000) : e.properties.time,
    },
  }));
}

async function main() {
  const mp = Mixpanel.init(P.token, P.config);
  const send = P.endpoint === "/import" ? mp.import_batch : mp.track_batch;
  await step("batch", (cb) => send(makeEvents(), cb));
  await step("batch retried", (cb) => send(makeEvents(), cb));
}
"""


def batch_events(count: int, start: float, prefix: str) -> list[Row]:
    """Events with text that makes `+` and `/` appear in the base64 of a batch (the form body is not
    URL-encoded, so a `+` reaches the server as a space)."""
    return [
        {
            "event": f"Batch {i % 3}",
            "properties": {
                "distinct_id": f"user-{i % 7}",
                "time": round(start + i * 1.001, 3),
                "$insert_id": f"{prefix}-{i}",
                "i": i,
                "text": "café ☕ ~>?" * (i % 4 + 1),
            },
        }
        for i in range(count)
    ]


def check_batch_rows(rows: list[Row], events: list[Row]) -> None:
    expected = []
    for i, ev in enumerate(events):
        props = ev["properties"]
        sent_time = round(props["time"] * 1000) if i % 2 == 0 else props["time"]
        expected.append(
            {
                "event": ev["event"],
                "distinct_id": props["distinct_id"],
                "time": pytest.approx(props["time"], abs=1e-6),
                "insert_id": props["$insert_id"],
                "properties": {**props, "time": sent_time},
            }
        )
    assert len(rows) == len(expected)
    assert rows == expected


def check_batch_wire(run: Any, endpoint: str, count: int) -> None:
    for name in ("batch", "batch retried"):
        requests = run.requests_of(name)
        assert [len(sent_data(r)) for r in requests] == [50] * (count // 50) + [count % 50]
        for r in requests:
            assert (r["method"], r["path"].split("?")[0]) == ("POST", endpoint)
            assert r["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
            assert (r["status"], r["response"]) == (200, "1")
    assert any("+" in r["body"] for r in run.requests_of("batch")), "no `+` in the base64: change the text"


def test_track_batch(node_sdk: Path, server: LiveServer, project: Row, db: psycopg.Connection[Row]) -> None:
    """120 events: three POSTs of 50, 50 and 20, sent at once; the same batch again is one copy of each."""
    events = batch_events(120, time.time() - 3 * 86400, "track")
    params = {
        "token": project["token"],
        "config": http_config(server),
        "events": events,
        "endpoint": "/track",
    }
    run = run_node(node_sdk, BATCH, params)
    run.assert_ok()
    check_batch_wire(run, "/track", len(events))
    check_batch_rows(event_rows(db, project["id"]), events)


def test_import_batch(
    node_sdk: Path, https_server: HttpsServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """`import_batch` with the API secret over HTTPS: old events (2024), 50 a request, retried once."""
    events = batch_events(120, 1705312800, "import")  # from 2024-01-15T10:00:00Z
    config = https_config(https_server, secret=project["api_secret"])
    params = {"token": project["token"], "config": config, "events": events, "endpoint": "/import"}
    run = run_node(node_sdk, BATCH, params, ca_file=https_server.ca_file)
    run.assert_ok()
    check_batch_wire(run, "/import", len(events))
    basic = "Basic " + base64.b64encode(f"{project['api_secret']}:".encode()).decode()
    assert {r["headers"]["Authorization"] for r in run.wire} == {basic}
    check_batch_rows(event_rows(db, project["id"]), events)


IMPORT = """
async function main() {
  const mp = Mixpanel.init(P.token, P.config);
  const first = { distinct_id: "u1", $insert_id: "imp-1", src: "crm" };
  await step("import with a Date", (cb) => mp.import("Old event", new Date(P.t * 1000), first, cb));
  const second = () => ({ distinct_id: "u1", $insert_id: "imp-2" });
  await step("import with seconds", (cb) => mp.import("Old event", P.seconds, second(), cb));
  await step("import retried", (cb) => mp.import("Old event", P.seconds, second(), cb));
  const live = { distinct_id: "u2", $insert_id: "live-1" };
  await step("track with the secret", (cb) => mp.track("Live", live, cb));
  await step("people.set with the secret", (cb) => mp.people.set("u1", { imported: true }, cb));
  await step("groups.set with the secret", (cb) => mp.groups.set("company", "acme", { imported: true }, cb));
}
"""


def test_import_with_api_secret(
    node_sdk: Path, https_server: HttpsServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """A client set up with `secret` (HTTPS): `import`, and every other call carrying the same Basic auth."""
    seconds = 1705312800  # 2024-01-15T10:00:00Z
    config = https_config(https_server, secret=project["api_secret"])
    params = {"token": project["token"], "config": config, "t": T, "seconds": seconds}
    run = run_node(node_sdk, IMPORT, params, ca_file=https_server.ca_file)
    run.assert_ok()
    basic = "Basic " + base64.b64encode(f"{project['api_secret']}:".encode()).decode()
    assert {r["headers"].get("Authorization") for r in run.wire} == {basic}
    assert [r["path"].split("?")[0] for r in run.wire] == ["/import"] * 3 + ["/track", "/engage", "/groups"]

    rows = event_rows(db, project["id"])
    assert [(r["event"], r["distinct_id"], r["insert_id"]) for r in rows] == [
        ("Old event", "u1", "imp-2"),
        ("Old event", "u1", "imp-1"),
        ("Live", "u2", "live-1"),
    ]
    assert rows[0]["time"] == seconds
    assert rows[0]["properties"] == {"distinct_id": "u1", "$insert_id": "imp-2", "time": seconds, **SDK_PROPS}
    assert rows[1]["time"] == pytest.approx(T)
    assert rows[1]["properties"] == {
        "distinct_id": "u1",
        "$insert_id": "imp-1",
        "src": "crm",
        "time": 1732300000500,
        **SDK_PROPS,
    }
    assert profile_rows(db, project["id"])["u1"]["properties"] == {"imported": True}
    assert group_rows(db, project["id"])[("company", "acme")]["properties"] == {"imported": True}


IMPORT_AUTH = """
async function main() {
  let config = P.config;
  if (P.service_account) {
    const [user, secret, projectId] = P.service_account;
    config = { ...config, credentials: new Mixpanel.ServiceAccountCredentials(user, secret, projectId) };
  }
  const mp = Mixpanel.init(P.token, config);
  const props = { distinct_id: "u1", $insert_id: "a-1" };
  await step("import", (cb) => mp.import("Old event", P.seconds, props, cb));
}
"""


@pytest.mark.parametrize(
    "mode", ["service account", "project token as the secret", "legacy api_key", "wrong secret"]
)
def test_import_credentials(
    mode: str,
    node_sdk: Path,
    server: LiveServer,
    https_server: HttpsServer,
    project: Row,
    db: psycopg.Connection[Row],
) -> None:
    """The other ways the Node SDK authenticates `import`: `ServiceAccountCredentials(user, secret,
    project_id)` (Basic user:secret and `?project_id=`), `secret: <token>`, `key` (`?api_key=`, over HTTP)."""
    params: Row = {"token": project["token"], "seconds": 1705312800}
    if mode == "service account":
        params["config"] = https_config(https_server)
        params["service_account"] = ["svc-user", project["api_secret"], str(project["id"])]
    elif mode == "project token as the secret":
        params["config"] = https_config(https_server, secret=project["token"])
    elif mode == "legacy api_key":
        params["config"] = {**http_config(server), "key": project["api_secret"]}
    else:
        params["config"] = https_config(https_server, secret="not-the-secret")
    run = run_node(node_sdk, IMPORT_AUTH, params, ca_file=https_server.ca_file)
    (request,) = run.wire
    if mode == "service account":
        assert f"project_id={project['id']}" in request["path"]
    rows = event_rows(db, project["id"])
    if mode == "wrong secret":
        assert request["status"] == 401
        assert "invalid credentials" in (run.error_of("import") or ""), run.report(["import"])
        assert rows == []
    else:
        run.assert_ok()
        assert [(r["event"], r["insert_id"], r["time"]) for r in rows] == [("Old event", "a-1", 1705312800)]


IMPORT_NO_INSERT_ID = """
async function main() {
  const mp = Mixpanel.init(P.token, { ...P.config, verbose: P.verbose });
  // The SDK's README example: no $insert_id (the SDK never adds one).
  const when = new Date(2012, 4, 20, 12, 34, 56);
  await step("import", (cb) => mp.import("old event", when, { distinct_id: "billybob" }, cb));
}
"""


@pytest.mark.parametrize("verbose", [True, False], ids=["verbose", "not verbose"])
def test_import_without_insert_id_is_refused_visibly(
    verbose: bool, node_sdk: Path, https_server: HttpsServer, project: Row, db: psycopg.Connection[Row]
) -> None:
    """docs/ingest.md 5: `$insert_id` is required on /import, and the Node SDK adds none: the SDK's own README
    example is refused, and its callback gets an Error (naming the field when verbose)."""
    config = https_config(https_server, secret=project["api_secret"])
    params = {"token": project["token"], "config": config, "verbose": verbose}
    run = run_node(node_sdk, IMPORT_NO_INSERT_ID, params, ca_file=https_server.ca_file)
    error = run.error_of("import")
    assert error is not None, run.report(["import"])
    if verbose:
        assert "$insert_id" in error, run.report(["import"])
    assert event_rows(db, project["id"]) == []
