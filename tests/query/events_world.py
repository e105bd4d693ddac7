"""A small fixed world for the event read API tests: 30 users (24 with a profile), 493 events over the 90 days
2025-01-01 .. 2025-03-31 (UTC), loaded through /engage and /import as clients send them.

* Profiles u00..u23: plan = pro/free/team by i % 3, except u21..u23 which have no plan; country DE/FR by
  i % 2; age 20 + i.  u24..u29 have events but no profile.  `$last_seen` is 2024-12-22T00:00:00.
* 480 "bulk" events, k = 0..479: user u{k % 30}, except every 40th (k % 40 == 39: 12 events) which has
  no user; name Viewed/Added/Purchase by (k // 7) % 3; day (37 k) % 90 after 2025-01-01 at second
  (4523 k) % 86400 of the day; `amount` (k % 5) * 10 on Purchase; `color` red/blue/green by k % 3, absent
  when k % 4 == 0.
* 13 "Edge" events at the edges of days, ISO weeks and months (EDGES), two of them outside the range, two
  sent with their time in milliseconds, one as ISO text, one without a user, one of a user without a profile.

`expected` is the same aggregation in plain Python (the expression evaluator of expressions/evaluate.py for
`where`): the tests check the hard-coded figures against it, and the server against both.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson

from profilestore.expressions import evaluate, parse, truthy

Row = dict[str, Any]
DAY0 = datetime(2025, 1, 1, tzinfo=UTC)
T0 = int(DAY0.timestamp())  # 1735689600
FROM, TO = "2025-01-01", "2025-03-31"
NAMES = ["Viewed", "Added", "Purchase"]
COLORS = ["red", "blue", "green"]
PLANS = ["pro", "free", "team"]
LAST_SEEN = T0 - 10 * 86400  # 2024-12-22T00:00:00


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# (insert_id, distinct_id, time as sent) of the "Edge" events.
EDGES: list[tuple[str, str, Any]] = [
    ("x1", "u01", ts("2024-12-31T23:59:59")),  # before the range
    ("x2", "u01", ts("2025-01-01T00:00:00")),  # first second of the range
    ("x3", "u02", ts("2025-01-31T23:59:59")),
    ("x4", "u02", ts("2025-02-01T00:00:00")),
    ("x5", "u03", ts("2025-02-01T00:00:00")),
    ("x6", "u03", ts("2025-02-28T23:59:59") * 1000 + 500),  # milliseconds, .5 s
    ("x7", "u04", "2025-03-01T00:00:00Z"),  # ISO text
    ("x8", "u25", ts("2025-03-31T23:59:59")),  # a user without a profile, last second of the range
    ("x9", "u05", ts("2025-04-01T00:00:00")),  # after the range
    ("x10", "", ts("2025-03-02T12:00:00")),  # no user
    ("x11", "u06", ts("2025-01-05T23:59:59")),  # Sunday: the ISO week of 2024-12-30
    ("x12", "u06", ts("2025-01-06T00:00:00")),  # Monday: the week of 2025-01-06
    ("x13", "u07", ts("2025-02-14T10:00:00") * 1000),  # milliseconds
]


def user_id(i: int) -> str:
    return f"u{i:02d}"


def profiles() -> dict[str, Row]:
    out: dict[str, Row] = {}
    for i in range(24):
        props: Row = {"country": ["DE", "FR"][i % 2], "age": 20 + i}
        if i < 21:
            props["plan"] = PLANS[i % 3]
        out[user_id(i)] = props
    return out


def bulk_event(k: int) -> Row:
    name = NAMES[(k // 7) % 3]
    props: Row = {"time": T0 + ((37 * k) % 90) * 86400 + (4523 * k) % 86400, "$insert_id": f"b{k}"}
    if k % 40 != 39:
        props["distinct_id"] = user_id(k % 30)
    if name == "Purchase":
        props["amount"] = (k % 5) * 10
    if k % 4 != 0:
        props["color"] = COLORS[k % 3]
    return {"event": name, "properties": props}


def events() -> list[Row]:
    """Every event as sent (without the token)."""
    out = [bulk_event(k) for k in range(480)]
    for insert_id, distinct_id, t in EDGES:
        props: Row = {"time": t, "$insert_id": insert_id}
        if distinct_id:
            props["distinct_id"] = distinct_id
        out.append({"event": "Edge", "properties": props})
    return out


def seconds(sent: Any) -> float:
    """The time as ingestion reads it (docs/ingest.md): ISO text, seconds, or milliseconds."""
    if isinstance(sent, str):
        return datetime.fromisoformat(sent.replace("Z", "+00:00")).timestamp()
    return sent / 1000 if sent >= 1e11 else float(sent)


def stored() -> list[Row]:
    """The events as the export shows them: name, distinct_id, epoch seconds (float), properties as sent."""
    out = []
    for e in events():
        p = e["properties"]
        out.append(
            {
                "event": e["event"],
                "distinct_id": p.get("distinct_id", ""),
                "time": seconds(p["time"]),
                "insert_id": p["$insert_id"],
                "properties": p,
            }
        )
    return sorted(out, key=lambda r: (r["time"], r["event"], r["distinct_id"], r["insert_id"]))


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()}


def load(client: httpx.Client, project: Row) -> None:
    updates = [
        {"$token": project["token"], "$distinct_id": d, "$time": LAST_SEEN, "$set": p}
        for d, p in profiles().items()
    ]
    response = client.post("/engage", params={"verbose": 1}, content=orjson.dumps(updates))
    assert response.json() == {"status": 1, "error": None}, response.text
    response = client.post("/import", json=events(), headers=basic(project["api_secret"]))
    assert response.json()["num_records_imported"] == len(EDGES) + 480, response.text


def iso_day(t: float) -> date:
    return datetime.fromtimestamp(t, UTC).date()


def bucket(t: float, unit: str) -> str:
    day = iso_day(t)
    if unit == "week":
        day -= timedelta(days=day.weekday())
    elif unit == "month":
        day = day.replace(day=1)
    return day.isoformat()


def expected(request: Row, *, now: float = 0.0) -> Row:
    """The events query in plain Python: {"results": [[keys, count, unique], ...] sorted, "total"}."""
    first = date.fromisoformat(request["from_date"])
    last = date.fromisoformat(request["to_date"])
    where = parse(request["where"]) if request.get("where") else None
    users = profiles()
    counts: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, set()])
    total: list[Any] = [0, set()]
    for e in stored():
        if not first <= iso_day(e["time"]) <= last:
            continue
        if request.get("events") is not None and e["event"] not in request["events"]:
            continue
        props = {**e["properties"], "time": e["time"], "distinct_id": e["distinct_id"]}
        user = users.get(e["distinct_id"], {})
        if user:
            user = {**user, "$last_seen": "2024-12-22T00:00:00"}
        if where is not None and not truthy(evaluate(where, props, user=user, now=now)):
            continue
        keys = []
        for g in request.get("group_by", []):
            if g["type"] == "event":
                keys.append(e["event"])
            elif g["type"] == "property":
                keys.append(props.get(g["name"]))
            elif g["type"] == "user":
                keys.append(user.get(g["name"]))
            else:
                keys.append(bucket(e["time"], g["unit"]))
        for acc in (counts[tuple(keys)], total):
            acc[0] += 1
            if e["distinct_id"]:
                acc[1].add(e["distinct_id"])
    rows = [[list(k), c, len(u)] for k, (c, u) in counts.items()]
    rows.sort(key=lambda r: [(v is not None, v) for v in r[0]])
    return {"results": rows, "total": [total[0], len(total[1])]}
