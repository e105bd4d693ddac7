"""`project_id` in a POST body of /import is honoured by authentication exactly like the query string's
(issue 10, finding 9): a form field names the project of a service account, another project's id fails, and
a body that contradicts the query string about its credentials is refused rather than outvoted."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import psycopg
from events_support import event, events_of

Row = dict[str, Any]
T0 = 1_732_300_000


def service_account(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"sa-user:{secret}".encode()).decode()}


def form(project_id: Any, **fields: Any) -> dict[str, Any]:
    events = [event(None, "Imported", distinct_id="u1", time=T0, **{"$insert_id": "imp-1"})]
    return {"data": json.dumps(events), "project_id": str(project_id), **fields}


def test_project_id_in_the_form_body(client: httpx.Client, project: Row, db: psycopg.Connection[Row]) -> None:
    headers = service_account(project["api_secret"])
    other = project["id"] + 1_000_000
    assert client.post("/import", data=form(other), headers=headers).status_code == 401
    assert client.post("/import", data=form("seven"), headers=headers).status_code == 400
    assert events_of(db, project["id"]) == []
    response = client.post("/import", data=form(project["id"]), headers=headers)
    assert (response.status_code, response.json()["num_records_imported"]) == (200, 1)
    assert len(events_of(db, project["id"])) == 1


def test_a_body_that_contradicts_the_query_string(
    client: httpx.Client, project: Row, db: psycopg.Connection[Row]
) -> None:
    headers = service_account(project["api_secret"])
    other = project["id"] + 1_000_000
    response = client.post("/import", params={"project_id": project["id"]}, data=form(other), headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "project_id: the query string and the body name different values"
    response = client.post(
        "/import", params={"api_key": project["api_secret"]}, data={**form(project["id"]), "api_key": "other"}
    )
    assert response.status_code == 400, response.text
    assert events_of(db, project["id"]) == []
    same = client.post(
        "/import", params={"project_id": project["id"]}, data=form(project["id"]), headers=headers
    )
    assert same.status_code == 200, same.text
