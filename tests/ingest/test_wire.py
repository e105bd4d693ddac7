"""Request decoding of the ingestion endpoints (docs/ingest.md section 1): every form the SDKs and scripts
send."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from profilestore.errors import PayloadTooLarge, UnsupportedMediaType
from profilestore.ingest.wire import WireRequest, read_wire_request

pytestmark = pytest.mark.anyio

LIMIT = 1_000_000
# ">>>???" makes the standard base64 of these records hold both `+` and `/`.
ONE = {"$token": "tok", "$distinct_id": "u1", "$set": {"a": ">>>???", "phone": "+49 30 1234"}}
MANY = [ONE, {"$token": "tok", "$distinct_id": "u2", "$add": {"n": 1}}]


def b64(obj: Any, *, urlsafe: bool = False, padded: bool = True) -> str:
    raw = json.dumps(obj).encode()
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    return text if padded else text.rstrip("=")


class Recorder:
    """An ASGI `receive` that hands out the body in chunks and counts what was taken."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.taken = 0

    async def __call__(self) -> Message:
        if self.taken < len(self.chunks):
            chunk = self.chunks[self.taken]
            self.taken += 1
            return {"type": "http.request", "body": chunk, "more_body": self.taken < len(self.chunks)}
        return {"type": "http.request", "body": b"", "more_body": False}


def make_request(
    method: str = "POST",
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | list[bytes] = b"",
) -> tuple[Request, Recorder]:
    chunks = body if isinstance(body, list) else [body]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/engage",
        "raw_path": b"/engage",
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "server": ("testserver", 80),
        "client": ("203.0.113.9", 50000),
    }
    receive = Recorder(chunks)
    return Request(scope, receive), receive


async def decode(
    method: str = "POST",
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | list[bytes] = b"",
    limit: int = LIMIT,
) -> WireRequest:
    request, _ = make_request(method, query, headers, body)
    return await read_wire_request(request, max_body_bytes=limit)


FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON_CT = {"content-type": "application/json"}


# --- GET ?data= ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b64(ONE),
        b64(ONE, padded=False),
        b64(ONE, urlsafe=True),
        b64(ONE, urlsafe=True, padded=False),
    ],
    ids=["standard", "unpadded", "urlsafe", "urlsafe-unpadded"],
)
async def test_get_base64(data: str) -> None:
    got = await decode("GET", "data=" + quote(data, safe="") + "&ip=1&verbose=1")
    assert got == WireRequest({"ip": "1", "verbose": "1"}, [ONE], None)


async def test_get_base64_with_plus_as_space() -> None:
    data = b64(ONE)
    assert "+" in data
    got = await decode("GET", "data=" + data)  # `+` not escaped: it arrives as a space
    assert got.records == [ONE]


async def test_get_raw_json_array() -> None:
    got = await decode("GET", "data=" + quote(json.dumps(MANY)))
    assert got.records == MANY
    assert got.error is None


async def test_get_without_data() -> None:
    got = await decode("GET", "verbose=1")
    assert got == WireRequest({"verbose": "1"}, None, "missing data parameter")


async def test_get_ignores_body_and_content_type() -> None:
    got = await decode("GET", "data=" + quote(b64(ONE)), {"content-type": "image/png"}, b"junk")
    assert got.records == [ONE]


# --- form bodies --------------------------------------------------------------------------------------------


async def test_form_raw_json_python_sdk() -> None:
    body = urlencode({"data": json.dumps(MANY), "verbose": 1, "ip": 0}).encode()
    got = await decode(headers=FORM, body=body)
    assert got == WireRequest({"verbose": "1", "ip": "0"}, MANY, None)


async def test_form_base64_browser_sdk() -> None:
    body = ("data=" + quote(b64(MANY), safe="")).encode()
    got = await decode(
        headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"}, body=body
    )
    assert got.records == MANY


async def test_form_base64_node_sdk_not_url_encoded() -> None:
    data = b64(MANY)
    assert "+" in data and "/" in data and data.endswith("=")
    got = await decode(headers=FORM, body=f"data={data}&verbose=1".encode())
    assert got.records == MANY
    assert got.params == {"verbose": "1"}


async def test_form_base64_wrapped_lines() -> None:
    data = base64.encodebytes(json.dumps(MANY).encode()).decode()  # wrapped at 76 columns, like `base64`
    assert "\n" in data.strip()
    got = await decode(headers=FORM, body=("data=" + quote(data, safe="")).encode())
    assert got.records == MANY


async def test_form_raw_json_keeps_spaces() -> None:
    record = {"$distinct_id": "u 1", "$set": {"name": "Ada  Lovelace "}}
    body = ("data=" + quote("  " + json.dumps(record))).encode()
    got = await decode(headers=FORM, body=body)
    assert got.records == [record]


async def test_query_string_wins_over_form_fields() -> None:
    body = urlencode({"data": json.dumps(ONE), "verbose": "1", "ip": "0"}).encode()
    got = await decode(query="verbose=2&strict=1", headers=FORM, body=body)
    assert got.params == {"verbose": "2", "ip": "0", "strict": "1"}
    assert got.records == [ONE]


async def test_form_without_data() -> None:
    got = await decode(headers=FORM, body=b"verbose=1")
    assert got == WireRequest({"verbose": "1"}, None, "missing data parameter")


async def test_form_empty_data() -> None:
    got = await decode(headers=FORM, body=b"data=&verbose=1")
    assert got.records is None
    assert got.error == "data is empty"


async def test_post_with_data_in_query_and_empty_body() -> None:
    got = await decode(query="data=" + quote(b64(ONE), safe=""), headers=FORM)
    assert got.records == [ONE]


async def test_sendbeacon_text_plain() -> None:
    body = ("data=" + quote(b64(MANY), safe="")).encode()
    got = await decode(headers={"content-type": "text/plain;charset=UTF-8"}, body=body)
    assert got.records == MANY


async def test_text_plain_json_body() -> None:
    got = await decode(headers={"content-type": "text/plain"}, body=json.dumps(MANY).encode())
    assert got.records == MANY


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (("data=" + quote(json.dumps(MANY))).encode(), MANY),
        (json.dumps(MANY).encode(), MANY),
        (b"  \n" + json.dumps(ONE).encode(), [ONE]),
    ],
    ids=["form", "array", "object"],
)
async def test_missing_content_type_is_sniffed(body: bytes, expected: list[Any]) -> None:
    got = await decode(body=body)
    assert got.records == expected


# --- JSON and NDJSON ----------------------------------------------------------------------------------------


async def test_json_array() -> None:
    got = await decode(headers=JSON_CT, body=json.dumps(MANY).encode())
    assert got == WireRequest({}, MANY, None)


async def test_json_single_object() -> None:
    got = await decode(
        headers={"content-type": "application/json; charset=utf-8"}, body=json.dumps(ONE).encode()
    )
    assert got.records == [ONE]


async def test_json_body_in_many_chunks() -> None:
    raw = json.dumps(MANY * 50).encode()
    chunks = [raw[i : i + 97] for i in range(0, len(raw), 97)]
    got = await decode(headers=JSON_CT, body=chunks)
    assert got.records == MANY * 50


async def test_ndjson() -> None:
    body = b"\n".join(json.dumps(r).encode() for r in MANY) + b"\n\n"
    got = await decode(query="strict=1", headers={"content-type": "application/x-ndjson"}, body=body)
    assert got == WireRequest({"strict": "1"}, MANY, None)


async def test_ndjson_crlf_and_blank_lines() -> None:
    body = b"\r\n".join([b"", json.dumps(MANY[0]).encode(), b"   ", json.dumps(MANY[1]).encode(), b""])
    got = await decode(headers={"content-type": "application/x-ndjson"}, body=body)
    assert got.records == MANY


async def test_ndjson_bad_line_names_it() -> None:
    body = json.dumps(ONE).encode() + b"\n{oops\n"
    got = await decode(headers={"content-type": "application/x-ndjson"}, body=body)
    assert got.records is None
    assert got.error is not None and got.error.startswith("line 2 is not valid JSON")


async def test_ndjson_sent_as_json_is_still_read() -> None:
    body = b"\n".join(json.dumps(r).encode() for r in MANY)
    got = await decode(headers=JSON_CT, body=body)
    assert got.records == MANY


async def test_pretty_json_sent_as_ndjson_is_still_read() -> None:
    body = json.dumps(MANY, indent=2).encode()
    got = await decode(headers={"content-type": "application/x-ndjson"}, body=body)
    assert got.records == MANY


# --- gzip ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", urlencode({"data": json.dumps(MANY)}).encode()),
        ("application/x-www-form-urlencoded", ("data=" + b64(MANY)).encode()),
        ("text/plain", ("data=" + quote(b64(MANY), safe="")).encode()),
        ("application/json", json.dumps(MANY).encode()),
        ("application/x-ndjson", b"\n".join(json.dumps(r).encode() for r in MANY)),
        ("", json.dumps(MANY).encode()),
    ],
    ids=["form-json", "form-base64", "beacon", "json", "ndjson", "sniffed"],
)
async def test_gzip_of_each_post_form(content_type: str, body: bytes) -> None:
    headers = {"content-encoding": "gzip"}
    if content_type:
        headers["content-type"] = content_type
    got = await decode(headers=headers, body=gzip.compress(body))
    assert got.records == MANY
    assert got.error is None


async def test_gzip_in_chunks_and_multiple_members() -> None:
    raw = json.dumps(MANY).encode()
    compressed = gzip.compress(raw[:20]) + gzip.compress(raw[20:])
    chunks = [compressed[i : i + 7] for i in range(0, len(compressed), 7)]
    got = await decode(headers={**JSON_CT, "content-encoding": "gzip"}, body=chunks)
    assert got.records == MANY


async def test_zlib_deflate() -> None:
    got = await decode(headers={**JSON_CT, "content-encoding": "deflate"}, body=zlib.compress(b"[1,2]"))
    assert got.records == [1, 2]


async def test_invalid_gzip() -> None:
    got = await decode(headers={**JSON_CT, "content-encoding": "gzip"}, body=b"not gzip at all")
    assert got == WireRequest({}, None, "body is not valid gzip")


async def test_truncated_gzip() -> None:
    compressed = gzip.compress(json.dumps(MANY).encode())
    got = await decode(
        headers={**JSON_CT, "content-encoding": "gzip"}, body=compressed[: len(compressed) // 2]
    )
    assert got.records is None
    assert got.error == "body is not valid gzip"


async def test_gzip_bomb_stops_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)
    assert len(bomb) < LIMIT
    produced: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *args: Any) -> None:
            self.inner = real(*args)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            assert 0 < max_length <= LIMIT + 1
            out = self.inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Counting)
    with pytest.raises(PayloadTooLarge) as info:
        await decode(headers={**JSON_CT, "content-encoding": "gzip"}, body=bomb)
    assert info.value.status_code == 413
    assert produced and sum(produced) <= LIMIT + 1


async def test_gzip_exactly_at_the_limit_is_accepted() -> None:
    raw = b"[" + b" " * (LIMIT - 2) + b"]"
    got = await decode(headers={**JSON_CT, "content-encoding": "gzip"}, body=gzip.compress(raw))
    assert got.records == []


# --- limits and content types -------------------------------------------------------------------------------


async def test_raw_body_over_the_limit_stops_reading() -> None:
    chunks = [b"[" + b" " * 99_999] * 100  # 10 MB in 100 chunks, limit 1 MB
    request, receive = make_request(headers=JSON_CT, body=chunks)
    with pytest.raises(PayloadTooLarge):
        await read_wire_request(request, max_body_bytes=LIMIT)
    assert receive.taken <= 11


async def test_declared_length_over_the_limit_reads_nothing() -> None:
    request, receive = make_request(headers={**JSON_CT, "content-length": str(LIMIT + 1)}, body=[b"[]"])
    with pytest.raises(PayloadTooLarge):
        await read_wire_request(request, max_body_bytes=LIMIT)
    assert receive.taken == 0


async def test_body_exactly_at_the_limit_is_accepted() -> None:
    got = await decode(headers=JSON_CT, body=b"[" + b" " * 98 + b"]", limit=100)
    assert got.records == []


@pytest.mark.parametrize(
    "content_type", ["application/octet-stream", "multipart/form-data; boundary=x", "image/png"]
)
async def test_unknown_content_type(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        await decode(headers={"content-type": content_type}, body=b"[]")
    assert info.value.status_code == 415


async def test_unknown_content_encoding() -> None:
    with pytest.raises(UnsupportedMediaType):
        await decode(headers={**JSON_CT, "content-encoding": "br"}, body=b"[]")


# --- unreadable bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "error"),
    [
        (JSON_CT, b"", "empty body"),
        (FORM, b"  \n", "empty body"),
        ({}, b"", "empty body"),
        (JSON_CT, b"[{]", "body is not valid JSON"),
        (JSON_CT, b"42", "data must be a JSON object or an array of objects"),
        (FORM, b"data=%7Boops", "data is not valid JSON"),
        (FORM, b"data=!!!notbase64!!!", "data is not valid base64 or JSON"),
        (FORM, b"data=abcde", "data is not valid base64 or JSON"),
        (FORM, ("data=" + base64.b64encode(b"hello").decode()).encode(), "data is not valid base64 or JSON"),
        (FORM, ("data=" + base64.b64encode(b"[oops").decode()).encode(), "data is not valid JSON"),
        (FORM, b"data=%FF%FE", "body is not valid UTF-8"),
        (FORM, b"data=\xff\xfe", "body is not valid UTF-8"),
        (FORM, b"data=%E2%82", "body is not valid UTF-8"),
    ],
)
async def test_unreadable_body(headers: dict[str, str], body: bytes, error: str) -> None:
    got = await decode(headers=headers, body=body)
    assert got.records is None
    assert got.error is not None and got.error.startswith(error)


async def test_unreadable_body_keeps_params() -> None:
    got = await decode(query="verbose=1", headers=FORM, body=b"data=%%%&strict=1")
    assert got.records is None
    assert got.params == {"verbose": "1", "strict": "1"}


async def test_utf8_bom_is_skipped() -> None:
    got = await decode(headers=JSON_CT, body=b"\xef\xbb\xbf" + json.dumps(MANY).encode())
    assert got.records == MANY


# --- through a real ASGI app --------------------------------------------------------------------------------


async def endpoint(request: Request) -> JSONResponse:
    got = await read_wire_request(request, max_body_bytes=LIMIT)
    return JSONResponse({"params": got.params, "records": got.records, "error": got.error})


APP = Starlette(routes=[Route("/engage", endpoint, methods=["GET", "POST"])])


async def test_through_httpx() -> None:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        by_get = await client.get("/engage", params={"data": b64(ONE), "ip": "0"})
        by_form = await client.post("/engage", data={"data": json.dumps(MANY), "verbose": "1"})
        by_json = await client.post("/engage?verbose=2", json=MANY)
        by_gzip = await client.post(
            "/engage",
            content=gzip.compress(("data=" + b64(MANY)).encode()),
            headers={"content-type": "application/x-www-form-urlencoded", "content-encoding": "gzip"},
        )
        with pytest.raises(PayloadTooLarge):  # the bare app has no handler for it
            await client.post("/engage", content=b"[" + b" " * LIMIT + b"]", headers=JSON_CT)
    assert by_get.json() == {"params": {"ip": "0"}, "records": [ONE], "error": None}
    assert by_form.json() == {"params": {"verbose": "1"}, "records": MANY, "error": None}
    assert by_json.json() == {"params": {"verbose": "2"}, "records": MANY, "error": None}
    assert by_gzip.json()["records"] == MANY
