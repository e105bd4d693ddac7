"""Postgres stopped mid-run: 503s (never 500s), and ingestion resumes by itself when it is back.

The test owns a second, embedded Postgres so it can stop and start it.  Every update that got a 200 must
be in the table afterwards.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from profilestore.db.engine import connect
from support import LiveServer, OwnedPostgres, make_settings, new_project, owned_postgres

pytestmark = pytest.mark.slow


def test_database_outage_gives_503_then_recovers() -> None:
    """Sends updates while a Postgres of the test's own is stopped and started again; checks the statuses
    and the rows."""
    with owned_postgres("profilestore-outage-") as pg:
        run_outage(pg)


def run_outage(pg: OwnedPostgres) -> None:
    url = pg.url
    project = new_project(url)
    settings = make_settings(db_timeout_seconds=1.0, retry_after_seconds=2)
    statuses: list[int] = []
    accepted: list[str] = []
    stop = threading.Event()

    def sender() -> None:
        n = 0
        with httpx.Client(base_url=live.url, timeout=30) as http:
            while not stop.is_set():
                n += 1
                distinct_id = f"u{n}"
                record = {"$token": project["token"], "$distinct_id": distinct_id, "$set": {"n": n}}
                response = http.post("/engage", params={"verbose": "1"}, json=[record])
                statuses.append(response.status_code)
                if response.status_code == 200:
                    assert response.json() == {"status": 1, "error": None}
                    accepted.append(distinct_id)
                else:
                    assert response.status_code == 503, response.text
                    assert response.headers["retry-after"] == "2"
                    assert response.json()["code"] == 503
                    for internal in ("AdminShutdown", "Error", "Timeout", "terminating"):
                        assert internal not in response.text  # no exception class, no Postgres text
                time.sleep(0.01)

    with LiveServer(url, settings) as live:
        thread = threading.Thread(target=sender)
        thread.start()
        try:
            time.sleep(1.0)
            pg.stop()
            time.sleep(3.0)
            outage_seen = 503 in statuses
            pg.start()
            deadline = time.monotonic() + 30
            before = len(accepted)
            while len(accepted) < before + 20 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            thread.join(60)
        assert outage_seen, "no request saw the outage"
        assert 500 not in statuses
        assert len(accepted) >= before + 20, "ingestion did not resume after the restart"
        with connect(url) as conn:
            stored = {
                r["distinct_id"]
                for r in conn.execute(
                    "SELECT distinct_id FROM profiles WHERE project_id = %s", (project["id"],)
                ).fetchall()
            }
        assert set(accepted) <= stored
