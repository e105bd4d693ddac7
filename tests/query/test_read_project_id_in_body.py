"""`project_id` in a POST body of the read API is checked like the query string's (issue 10, finding 9):
another project's id is a 403, one that is not an integer a 400, the secret's own project a 200."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from profilestore import auth
from profilestore.errors import BadRequest, Forbidden
from profilestore.query.params import body_project_id

Row = dict[str, Any]
RANGE = {"from_date": "2025-01-01", "to_date": "2025-01-31"}


def test_events_query_body(client: httpx.Client, project: Row) -> None:
    auth_ = (project["api_secret"], "")
    other = client.post("/api/events/query", json={**RANGE, "project_id": project["id"] + 1}, auth=auth_)
    assert other.status_code == 403, other.text
    assert other.json() == {
        "error": "Forbidden",
        "detail": f"this secret does not belong to project {project['id'] + 1}",
    }
    own = client.post("/api/events/query", json={**RANGE, "project_id": project["id"]}, auth=auth_)
    assert own.status_code == 200, own.text


@pytest.mark.parametrize("path", ["/api/2.0/engage", "/api/query/engage", "/api/2.0/export"])
@pytest.mark.parametrize("encoding", ["form", "json"])
def test_mixpanel_paths(path: str, encoding: str, client: httpx.Client, project: Row) -> None:
    auth_ = (project["api_secret"], "")
    params = RANGE if path.endswith("export") else {}

    def post(project_id: Any) -> httpx.Response:
        body = {**params, "project_id": project_id}
        if encoding == "form":
            return client.post(path, data={k: str(v) for k, v in body.items()}, auth=auth_)
        return client.post(path, json=body, auth=auth_)

    other = post(project["id"] + 1)
    assert other.status_code == 403, other.text
    assert other.json() == {"error": f"this secret does not belong to project {project['id'] + 1}"}
    assert post("seven").status_code == 400
    assert post(project["id"]).status_code == 200


def test_the_check() -> None:
    assert body_project_id("application/json", b'{"where": "x", "project_id": 7}') == 7
    assert body_project_id("", b'{"project_id": "7"}') == "7"
    assert body_project_id("application/x-www-form-urlencoded", b"a=1&project_id=7&project_id=8") == "8"
    assert body_project_id("application/json", b'{"where": "x"}') is None
    assert body_project_id("application/json", b"{not json, project_id") is None
    auth.check_project_id(7, None)
    auth.check_project_id(7, "7")
    auth.check_project_id(7, 7)
    with pytest.raises(Forbidden):
        auth.check_project_id(7, 8)
    for bad in ("seven", True, 1.5, str(2**63), [7]):
        with pytest.raises(BadRequest):
            auth.check_project_id(7, bad)
