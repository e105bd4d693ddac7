"""schemathesis over the service's OpenAPI document, over real HTTP with a project's API secret: whatever
the generated parameters and bodies, no operation answers a 5xx (a 503 would mean the database is down, which
it is not here).  Marked slow: EXAMPLES_PER_OPERATION requests for each operation of the document, over
2,000 in all.  (Cases are drawn with hypothesis from each operation's strategy: schemathesis's own pytest
plugin does not run under this pytest.)"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from support import LiveServer, new_project

EXAMPLES_PER_OPERATION = 150


@pytest.mark.slow
def test_no_operation_answers_a_server_error(server: LiveServer, database_url: str) -> None:
    project = new_project(database_url)
    secret = base64.b64encode(f"{project['api_secret']}:".encode()).decode()
    headers = {"Authorization": f"Basic {secret}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) * EXAMPLES_PER_OPERATION >= 2000, len(operations)
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            assert response.status_code < 500, (
                f"{response.status_code} {response.text[:500]}\n{case.as_curl_command()}"
            )

        call()
