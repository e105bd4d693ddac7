"""How `serve` (and the tests' server) runs uvicorn: the HTTP protocol and its options.

The Node SDK sends every single call as `GET /engage?data=<base64 of the record>`, and records may be 1 MB
(docs/ingest.md), but httptools' URL parser refuses URLs over 64 KiB (uvicorn then answers a plain-text 400
before the app sees the request).  `LongUrlProtocol` hands it only the path of a long URL and sets the
query string itself.  URLs stay bounded: at most what a 10 MB body takes in base64, plus slack.
"""

from __future__ import annotations

from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTPTOOLS_MAX_URL = 65_535
MAX_URL_BYTES = 10_000_000 * 4 // 3 + 65_536


class LongUrlProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, for URLs of up to MAX_URL_BYTES."""

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            raise httptools.HttpParserError("the URL is too long")  # uvicorn answers 400 and closes

    def on_headers_complete(self) -> None:
        if len(self.url) <= HTTPTOOLS_MAX_URL:
            super().on_headers_complete()
            return
        path, _, query = self.url.partition(b"?")
        self.url = path
        super().on_headers_complete()
        # The request's scope is this dict; its ASGI task has not run yet (no await since it was created).
        self.scope["query_string"] = query


def uvicorn_options() -> dict[str, Any]:
    return {"http": LongUrlProtocol}
