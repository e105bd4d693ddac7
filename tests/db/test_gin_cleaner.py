"""The app merges the profile tables' GIN pending lists into their indexes in the background (app.py
`_clean_gin_pending_lists`, migration 0010), so that no request pays for the merge: a few seconds after
profile updates, there is nothing left to merge.  (Without the cleaner the entries would stay in the pending
list until it reached 16 MB or autovacuum came by.)"""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from support import LiveServer, make_settings, new_project

Row = dict[str, Any]


def test_the_pending_lists_are_merged_in_the_background(
    database_url: str, db: psycopg.Connection[Row]
) -> None:
    project = new_project(database_url)
    with (
        LiveServer(database_url, make_settings(gin_clean_seconds=0.2)) as live,
        httpx.Client(base_url=live.url, timeout=30) as http,
    ):
        updates = [
            {"$token": project["token"], "$distinct_id": f"g{i}", "$set": {"plan": f"p{i}", "n": i}}
            for i in range(200)
        ]
        groups = [
            {"$token": project["token"], "$group_key": "company", "$group_id": f"c{i}", "$set": {"n": i}}
            for i in range(50)
        ]
        assert http.post("/engage", json=updates).text == "1"
        assert http.post("/groups", json=groups).text == "1"
        time.sleep(1.5)
    for index in ("ix_profiles_properties", "ix_group_profiles_properties"):
        left = db.execute("SELECT gin_clean_pending_list(%s::regclass) AS pages", (index,)).fetchone()
        assert left is not None and left["pages"] == 0, index
