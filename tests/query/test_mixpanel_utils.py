"""Mixpanel's official export tool, `mixpanel-utils` (`MixpanelUtils`), against the service, unchanged but for
the host: `formatted_api` points at `<server>/api`, so it asks `GET /api/2.0/engage?...` as it asks Mixpanel.

How the tool reads profiles (mixpanel_utils 2.2.x): `query_engage` hands `_get_engage_page` to a
`ConcurrentPaginator`, which fetches page 0 without `page`, reads `session_id`, `total` and `page_size`
from it, then fetches pages 1 .. ceil(total / page_size) - 1 on `read_pool_size` threads at once, in any
order, and concatenates the `results`.  `export_people` writes that list as JSON or as CSV.  Credentials:
HTTP Basic `api_secret:` or, with a service account, `user:secret` plus `project_id` in every query
string.  A 4xx answer makes `request` return None (the tool then fails in `json.loads`); a 5xx is retried.

2,350 profiles (3 pages at the default page size of 1000; 24 at page_size=100) are loaded through `/engage`
with the project's token, 2,000 records a request.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from mixpanel_utils import MixpanelUtils

from support import LiveServer

N_PROFILES = 2_350
GROUPS = "abcde"


def distinct_id(i: int) -> str:
    return f"mpu-{i:05d}"


def properties_of(i: int) -> dict[str, Any]:
    """The properties profile i is given: numbers, strings that need CSV quoting, non-ASCII text, a list, and
    properties only some profiles have."""
    props: dict[str, Any] = {
        "n": i,
        "group": GROUPS[i % len(GROUPS)],
        "$email": f"user{i}@{'gmail.com' if i % 3 == 0 else 'example.org'}",
        "$name": f"Ünïcode Üser {i}",
        "score": i / 8,  # exact in binary: survives every round trip
        "tags": [f"t{i % 3}", "all"],
    }
    if i % 7 == 0:
        props["only_some"] = f'comma, "quote" {i}'
    if i % 11 == 0:
        props["nested"] = {"k": i, "l": [1, 2]}
    return props


def send_updates(http: httpx.Client, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 2000):
        response = http.post("/engage", params={"verbose": "1"}, json=records[start : start + 2000])
        assert response.status_code == 200, response.text
        assert response.json()["status"] == 1, response.text


def load_profiles(server: LiveServer, token: str, n: int = N_PROFILES) -> dict[str, dict[str, Any]]:
    expected = {distinct_id(i): properties_of(i) for i in range(n)}
    records = [{"$token": token, "$distinct_id": d, "$set": p} for d, p in expected.items()]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        send_updates(http, records)
    return expected


def tool(server: LiveServer, project: dict[str, Any], *, service_account: bool = False, **kw: Any) -> Any:
    """A MixpanelUtils pointed at the server; page fetches are recorded (the tool's own bound method, wrapped
    by an instance attribute: what it sends and parses is unchanged)."""
    if service_account:
        mp = MixpanelUtils(
            project["api_secret"],
            service_account_username="profilestore-test.sa",
            project_id=project["id"],
            timeout=60,
            max_retries=2,
            **kw,
        )
    else:
        mp = MixpanelUtils(project["api_secret"], timeout=60, max_retries=2, **kw)
    mp.formatted_api = f"{server.url}/api"
    mp.pages = []  # (params sent, the answer's page/page_size/total/session_id, number of results)
    lock = threading.Lock()
    fetch = mp._get_engage_page

    def recording(params: dict[str, Any]) -> Any:
        sent = dict(params)  # `request` adds project_id to it for a service account
        data = fetch(sent)
        assert data is not None, f"the tool got no usable answer for {sent} (see the log above)"
        summary = {k: data.get(k) for k in ("page", "page_size", "total", "session_id")}
        with lock:
            mp.pages.append((sent, summary, len(data["results"])))
        return data

    mp._get_engage_page = recording
    return mp


def check_pages(mp: Any, results: list[dict[str, Any]], page_size: int) -> None:
    """Every page answered the same total and session; the pages fetched add up to the results."""
    totals = {s["total"] for _, s, _ in mp.pages}
    sessions = {s["session_id"] for _, s, _ in mp.pages}
    assert len(totals) == 1, mp.pages
    assert len(sessions) == 1, mp.pages
    assert {s["page_size"] for _, s, _ in mp.pages} == {page_size}
    total = totals.pop()
    assert len(results) == total
    assert sorted(s["page"] for _, s, _ in mp.pages) == list(range(max(1, -(-total // page_size))))
    assert sum(n for _, _, n in mp.pages) == total


def ids_once(results: list[dict[str, Any]]) -> Counter[str]:
    counts = Counter(r["$distinct_id"] for r in results)
    repeated = {d: c for d, c in counts.items() if c > 1}
    assert not repeated, f"profiles returned more than once: {dict(list(repeated.items())[:10])}"
    return counts


def assert_properties(results: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    for r in results:
        want = expected[r["$distinct_id"]]
        got = r["$properties"]
        assert {k: got.get(k) for k in want} == want, r["$distinct_id"]
        assert isinstance(got["$last_seen"], str) and len(got["$last_seen"]) == 19, got.get("$last_seen")


# --- query_engage -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("service_account", [False, True], ids=["api-secret", "service-account"])
def test_query_engage_returns_every_profile_once(
    server: LiveServer, project: dict[str, Any], service_account: bool
) -> None:
    expected = load_profiles(server, project["token"])
    mp = tool(server, project, service_account=service_account, read_pool_size=4)
    results = mp.query_engage()
    assert set(ids_once(results)) == set(expected)
    check_pages(mp, results, 1000)
    assert_properties(results, expected)
    if service_account:
        assert all(str(params.get("project_id")) == str(project["id"]) for params, _, _ in mp.pages)


def test_query_engage_small_pages_in_parallel(server: LiveServer, project: dict[str, Any]) -> None:
    expected = load_profiles(server, project["token"])
    mp = tool(server, project, read_pool_size=8)
    results = mp.query_engage({"page_size": 100})
    assert set(ids_once(results)) == set(expected)
    check_pages(mp, results, 100)
    assert len(mp.pages) == 24


@pytest.mark.parametrize(
    ("where", "matches"),
    [
        ('properties["n"] % 2 == 0', lambda i, p: i % 2 == 0),
        ('properties["group"] == "c"', lambda i, p: p["group"] == "c"),
        ('properties["n"] >= 100 and properties["n"] < 1300', lambda i, p: 100 <= i < 1300),
        ('"gmail" in properties["$email"]', lambda i, p: "gmail" in p["$email"]),
        ('defined(properties["only_some"])', lambda i, p: "only_some" in p),
        ('not defined(properties["only_some"])', lambda i, p: "only_some" not in p),
        ('"t1" in properties["tags"] or properties["score"] > 250', lambda i, p: i % 3 == 1 or i / 8 > 250),
        ('properties["n"] < 0', lambda i, p: False),
    ],
    ids=["modulo", "equality", "range", "substring", "defined", "not-defined", "list-or", "none"],
)
def test_query_engage_where(server: LiveServer, project: dict[str, Any], where: str, matches: Any) -> None:
    expected = load_profiles(server, project["token"])
    want = {distinct_id(i) for i in range(N_PROFILES) if matches(i, properties_of(i))}
    mp = tool(server, project, read_pool_size=4)
    results = mp.query_engage({"where": where})
    assert set(ids_once(results)) == want
    check_pages(mp, results, 1000)
    assert_properties(results, expected)
    assert all(params.get("where") == where for params, _, _ in mp.pages)  # sent with every page


def test_query_engage_output_properties_and_distinct_ids(server: LiveServer, project: dict[str, Any]) -> None:
    """List-valued parameters: the tool sends them as JSON text (`_unicode_urlencode`)."""
    expected = load_profiles(server, project["token"])
    mp = tool(server, project)
    chosen = [distinct_id(i) for i in range(0, N_PROFILES, 10)]
    results = mp.query_engage({"distinct_ids": chosen, "output_properties": ["$email", "n", "absent"]})
    assert set(ids_once(results)) == set(chosen)
    for r in results:
        want = expected[r["$distinct_id"]]
        assert r["$properties"] == {"$email": want["$email"], "n": want["n"]}


# --- export_people ----------------------------------------------------------------------------------------


def test_export_people_json(server: LiveServer, project: dict[str, Any], tmp_path: Path) -> None:
    expected = load_profiles(server, project["token"])
    mp = tool(server, project, read_pool_size=4)
    out = tmp_path / "people.json"
    mp.export_people(str(out), format="json")
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert set(ids_once(exported)) == set(expected)
    assert_properties(exported, expected)


def test_export_people_json_gzip_with_where(
    server: LiveServer, project: dict[str, Any], tmp_path: Path
) -> None:
    load_profiles(server, project["token"])
    mp = tool(server, project, read_pool_size=4)
    out = tmp_path / "people.json"
    mp.export_people(str(out), params={"where": 'properties["group"] != "a"'}, format="json", compress=True)
    exported = json.loads(gzip.decompress((tmp_path / "people.json.gz").read_bytes()))
    want = {distinct_id(i) for i in range(N_PROFILES) if GROUPS[i % 5] != "a"}
    assert set(ids_once(exported)) == want


def test_export_people_csv(server: LiveServer, project: dict[str, Any], tmp_path: Path) -> None:
    """The CSV the tool writes reads back, through the tool's own CSV parsing, to the profiles."""
    expected = load_profiles(server, project["token"])
    mp = tool(server, project, read_pool_size=4)
    out = tmp_path / "people.csv"
    mp.export_people(str(out), format="csv")
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[0] == "$distinct_id"
    assert {"n", "group", "$email", "$name", "score", "tags", "only_some", "nested", "$last_seen"} <= set(
        header
    )
    assert len(body) == N_PROFILES
    seen: Counter[str] = Counter()
    for row in body:
        assert len(row) == len(header)
        seen[row[0]] += 1
        props = MixpanelUtils._properties_from_csv_row(row, header, ["$distinct_id"])
        want = expected[row[0]]
        assert {k: props.get(k) for k in want} == want, row
        assert set(props) - set(want) == {"$last_seen"}, row
    assert seen == Counter(set(expected))


# --- while updates arrive ---------------------------------------------------------------------------------


class Updater:
    """A thread sending batches of `$set`/`$add` to existing profiles, and creating a few new ones, until
    stopped.  `group` is never changed, so a `where` on it matches the same existing profiles throughout."""

    def __init__(self, server: LiveServer, token: str) -> None:
        self.server, self.token = server, token
        self.stop = threading.Event()
        self.batches = 0
        self.attempted: list[str] = []  # new ids, appended before their batch is sent
        self.created: list[str] = []  # new ids whose batch was answered
        self.errors: list[str] = []
        self.first = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(7)
        k = 0
        with httpx.Client(base_url=self.server.url, timeout=60) as http:
            while not self.stop.is_set():
                batch: list[dict[str, Any]] = []
                for i in rng.sample(range(N_PROFILES), 150):
                    op = rng.choice(["$set", "$add"])
                    value = {"touched": k, "$name": f"renamed {k}"} if op == "$set" else {"hits": 1, "n": 0}
                    batch.append({"$token": self.token, "$distinct_id": distinct_id(i), op: value})
                for _ in range(3):
                    new_id = f"new-{k:06d}"
                    k += 1
                    self.attempted.append(new_id)
                    batch.append(
                        {"$token": self.token, "$distinct_id": new_id, "$set": {"group": "z", "n": -1}}
                    )
                rng.shuffle(batch)
                try:
                    send_updates(http, batch)
                except AssertionError as exc:
                    self.errors.append(str(exc))
                else:
                    self.created.extend(
                        r["$distinct_id"] for r in batch if r["$distinct_id"].startswith("new-")
                    )
                self.batches += 1
                self.first.set()

    def __enter__(self) -> Updater:
        self.thread.start()
        assert self.first.wait(30), "the updater's first batch did not go through"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


@pytest.mark.parametrize(
    ("params", "page_size"),
    [({}, 1000), ({"page_size": 100}, 100), ({"where": 'properties["group"] == "b"', "page_size": 50}, 50)],
    ids=["default-pages", "page-size-100", "where-page-size-50"],
)
def test_query_engage_while_updates_arrive(
    server: LiveServer, project: dict[str, Any], params: dict[str, Any], page_size: int
) -> None:
    expected = load_profiles(server, project["token"])
    where = params.get("where")
    existing = {d for d, p in expected.items() if where is None or p["group"] == "b"}
    overlapped = 0
    with Updater(server, project["token"]) as updater:
        # At least 3 rounds, and more (up to 12) until some update has landed during a query: a fast query
        # on a busy machine may finish before the updater's next batch does.
        for round_ in range(12):
            if round_ >= 3 and overlapped >= 1:
                break
            created_before = len(updater.created)
            before = updater.batches
            mp = tool(server, project, read_pool_size=8)
            started = time.monotonic()
            results = mp.query_engage(dict(params))
            elapsed = time.monotonic() - started
            overlapped += updater.batches - before
            counts = ids_once(results)
            assert existing <= set(counts), f"missing: {sorted(existing - set(counts))[:10]}"
            extra = set(counts) - existing
            # Only profiles the updater created (or was creating when the query ended) are extra.
            assert extra <= set(updater.attempted), sorted(extra)[:10]
            if where is not None:
                assert not extra
            else:
                # Those created before the first page was asked are in it; any others were created during it.
                assert set(updater.created[:created_before]) <= extra
            check_pages(mp, results, page_size)
            assert elapsed < 60
    assert not updater.errors, updater.errors[:3]
    assert overlapped >= 1, "no update went through while the queries ran"
