"""A database that cannot be reached is a 503 that names no exception class and quotes no driver text
(issue 10: "database unavailable (AdminShutdown)"); the detail goes to the log."""

from __future__ import annotations

import httpx

from support import LiveServer, free_port, make_settings


def test_503_names_nothing_internal() -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    settings = make_settings(db_timeout_seconds=0.5, retry_after_seconds=3)
    record = {"$token": "t", "$distinct_id": "u1", "$set": {"a": 1}}
    with LiveServer(nowhere, settings) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        response = http.post("/engage", params={"verbose": "1"}, json=[record])
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "3"
        assert response.json() == {
            "code": 503,
            "status": "Service Unavailable",
            "error": "database unavailable; nothing was applied, retry later",
        }
