#!/usr/bin/env python
"""The Users page benchmark: the server time of its pages on a million profiles, against the same questions
asked of Postgres directly.

    python bench/users_page.py [--profiles 1000000] [--database-url URL] [--runs 20] [--keep]

One run, one fresh database `profilestore_bench_users` on the server of --database-url (created, migrated,
dropped at the end unless --keep):
1. --profiles profiles by SQL (harness.data.load_profiles: the read benches' profiles, `last_seen` set), and
   200 events each for 1,000 of them over the last 80 days (the profile page's chart and activity feed);
2. `profilestore serve` as a separate process; the bench signs in through the sign-in form (a real session
   cookie) and keeps one keep-alive connection;
3. each page --runs times after 3 warm-ups, over real HTTP, from the request to the last byte of the HTML:
   the Users table's first page (its default order, most recently seen first), its second page (the keyset
   cursor of the first), the first page ordered by a property (`plan`, no index: a top-N sort), a filter
   (`properties["plan"] == "pro"`, the GIN index), the count (the page asks for it after its rows), and a
   profile page (properties, 90-day chart, activity feed);
4. beside each, the same rows read by hand-written SQL on a psycopg connection (no HTML, no HTTP): the floor;
5. prints a markdown table with the target (the first page under 300 ms) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg

from harness.data import load_profiles
from harness.db import bench_url, create_database, create_project, drop_database, use_database
from harness.machine import announce_machine, machine_facts
from harness.report import Row, markdown, ms
from harness.server import Server, free_port
from harness.stats import Timing, timed

BENCH_DB = "profilestore_bench_users"
FIRST_PAGE_TARGET = 0.300
EVENT_USERS, EVENTS_EACH = 1_000, 200

EVENTS_SQL = """
INSERT INTO events (project_id, event, distinct_id, time, insert_id, properties)
SELECT %(project_id)s, (ARRAY['Visit', 'Purchase', 'Signup', 'Search'])[1 + floor(random() * 4)::int],
       'u' || lpad(u::text, 8, '0'), now() - random() * interval '80 days', md5(u::text || '-' || e::text),
       jsonb_build_object('amount', floor(random() * 100)::int, 'page', '/p/' || e)
FROM generate_series(1, %(users)s) AS u, generate_series(1, %(each)s) AS e
"""
# What the pages read, by hand: the same shapes as query/profiles/table.py and query/events/feed.py.
RAW = {
    "first page": "SELECT distinct_id, properties, last_seen FROM profiles WHERE project_id = %(p)s"
    " ORDER BY coalesce(last_seen, '-infinity'::timestamptz) DESC, distinct_id DESC LIMIT 51",
    "second page": "SELECT distinct_id, properties, last_seen FROM profiles WHERE project_id = %(p)s"
    " AND (coalesce(last_seen, '-infinity'::timestamptz), distinct_id) < (%(t)s, %(d)s)"
    " ORDER BY coalesce(last_seen, '-infinity'::timestamptz) DESC, distinct_id DESC LIMIT 51",
    "ordered by plan": "SELECT distinct_id, properties, last_seen FROM profiles WHERE project_id = %(p)s"
    " ORDER BY coalesce(properties->'plan', 'null') DESC, distinct_id DESC LIMIT 51",
    "filter plan == pro": "SELECT distinct_id, properties, last_seen FROM profiles WHERE project_id = %(p)s"
    ' AND properties @> \'{"plan": "pro"}\''
    " ORDER BY coalesce(last_seen, '-infinity'::timestamptz) DESC, distinct_id DESC LIMIT 51",
    "count": "SELECT count(*) FROM profiles WHERE project_id = %(p)s",
    "profile page": "SELECT"
    " (SELECT properties FROM profiles WHERE project_id = %(p)s AND distinct_id = %(u)s),"
    " (SELECT array_agg(e) FROM (SELECT event FROM events WHERE project_id = %(p)s AND distinct_id = %(u)s"
    " ORDER BY time DESC LIMIT 51) e),"
    " (SELECT array_agg(n) FROM (SELECT count(*) AS n FROM events WHERE project_id = %(p)s"
    " AND distinct_id = %(u)s AND time > now() - interval '90 days' GROUP BY time::date) d)",
}


def sign_in(client: httpx.Client, secret: str) -> None:
    form = client.get("/signin").text
    match = re.search(r'name="csrf" value="([^"]+)"', form)
    assert match, form[:300]
    r = client.post("/signin", data={"secret": secret, "csrf": match.group(1), "next": "/users"})
    assert r.status_code == 303, r.text[:300]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    use_database(BENCH_DB)
    machine = machine_facts()
    announce_machine(machine, args.database_url)
    create_database(args.database_url)
    url = bench_url(args.database_url)
    server = None
    try:
        exe = Path(sys.executable).parent / "profilestore"
        subprocess.run([str(exe), "migrate"], check=True, env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"})
        project = create_project(url)
        print(f"loading {args.profiles:,} profiles and {EVENT_USERS * EVENTS_EACH:,} events ...")
        figures: dict[str, Any] = {"load": load_profiles(url, project["id"], args.profiles)}
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(EVENTS_SQL, {"project_id": project["id"], "users": EVENT_USERS, "each": EVENTS_EACH})
            conn.execute("VACUUM (ANALYZE) events")

        server = Server(url, free_port(), workers=1)
        server.wait_healthy()
        user = "u" + "1".zfill(8)
        with httpx.Client(base_url=server.base, timeout=120) as client:
            sign_in(client, project["api_secret"])
            first = client.get("/users")
            cursor = re.search(r'rel="next" href="/users\?after=([^"&]+)"', first.text)
            assert cursor, "no second page link"
            pages = {
                "first page": "/users",
                "second page": f"/users?after={cursor.group(1)}",
                "ordered by plan": "/users?sort=plan",
                "filter plan == pro": '/users?where=properties["plan"] == "pro"',
                "count": "/users/count",
                "profile page": f"/users/profile?distinct_id={user}",
            }
            service: dict[str, Timing] = {}
            for name, path in pages.items():

                def get(path: str = path) -> None:
                    r = client.get(path)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])

                service[name], _ = timed(args.runs, 3, get)
                print(f"  {name:<20} {ms(service[name].median):>10} (max {ms(service[name].max)})")

        with psycopg.connect(url, autocommit=True) as conn:
            second = conn.execute(RAW["first page"], {"p": project["id"]}).fetchall()[-2]
            params = {"p": project["id"], "u": user, "t": second[2] or "-infinity", "d": second[0]}
            raw = {
                name: timed(args.runs, 3, lambda q=q: conn.execute(q, params).fetchall())[0]
                for name, q in RAW.items()
            }

        rows = [
            Row(
                name,
                ms(service[name].median),
                ms(service[name].max),
                ms(raw[name].median),
                service[name].median / raw[name].median,
                "< 300 ms" if name == "first page" else "",
                service[name].median < FIRST_PAGE_TARGET if name == "first page" else None,
            )
            for name in pages
        ]
        print()
        for line in markdown(rows):
            print(line)
        figures.update(
            machine=machine,
            profiles=args.profiles,
            service={k: v.figures() for k, v in service.items()},
            raw={k: v.figures() for k, v in raw.items()},
        )
        print(json.dumps(figures, default=str))
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            drop_database(args.database_url)


if __name__ == "__main__":
    main()
