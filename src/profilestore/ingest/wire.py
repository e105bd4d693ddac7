"""Request decoding for the ingestion endpoints (`/engage`, `/groups`, `/track`, `/import`).

This module owns the transport of docs/ingest.md section 1: it turns a request in any of the forms the
Mixpanel SDKs, docs and scripts use (GET `?data=`, form bodies with raw JSON or base64, including the Node
SDK's un-encoded base64; sendBeacon `text/plain`; JSON; NDJSON; any of them gzipped) into merged parameters
and a list of parsed records.  The JSON itself is read by decode.py, which also refuses, record by record,
what cannot be stored as it was sent (RejectedRecord).

It raises only `PayloadTooLarge` (raw or decompressed body over the limit; a gzip bomb stops at the limit),
`UnsupportedMediaType` (a POST content type or content coding no form uses) and `BadRequest` (a form body
whose `project_id` or `api_key` contradicts the query string's). Everything else a client can get wrong ends
as `records=None` with a plain-words `error`, for the endpoint to answer in Mixpanel's shape.
"""

from __future__ import annotations

import binascii
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request

from profilestore.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from profilestore.ingest.decode import RejectedRecord, read_json

__all__ = ["RejectedRecord", "WireRequest", "read_wire_request"]

BodyKind = Literal["form", "json", "ndjson", "sniff"]

_CONTENT_TYPES: dict[str, BodyKind] = {
    "application/x-www-form-urlencoded": "form",
    "application/json": "json",
    "text/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/jsonlines": "ndjson",
    "text/plain": "sniff",  # sendBeacon sends `data=...`; fetch() of a JSON string also lands here
    "": "sniff",
}
# Content codings we inflate; wbits 47 = zlib or gzip header, auto-detected.
_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})
_INFLATE_WBITS = 32 + zlib.MAX_WBITS

_WHITESPACE = b" \t\r\n"
_NON_WHITESPACE = re.compile(rb"[^ \t\r\n]")
_NON_SPACE = re.compile(r"\S")
_BOM = b"\xef\xbb\xbf"
# URL-safe alphabet to the standard one, and a space (a `+` that form decoding turned into a space) back to
# `+`; line breaks (`base64` wraps its output at 76 columns) are dropped.
_B64_REPAIR = bytes.maketrans(b"-_ ", b"+/+")
_B64_DROP = b"\r\n\t"

# /import's credentials beside its Basic auth (docs/ingest.md section 5), checked like the query string's.
_CREDENTIALS = ("project_id", "api_key")
_NOT_DECODABLE = "data is not valid base64 or JSON"
_NOT_RECORDS = "data must be a JSON object or an array of objects"


@dataclass
class WireRequest:
    """What a request carried: its parameters, its records, or why its body was unreadable."""

    params: dict[str, str]  # form-body fields (other than data) + query string; the query string wins
    records: list[Any] | None  # parsed records (one object becomes a one-element list); None when unreadable
    error: str | None  # why the body was unreadable, in plain words; None otherwise
    size: int = field(default=0, compare=False)  # bytes of the (decompressed) body or data parameter
    content: bytes = field(default=b"", compare=False, repr=False)  # those bytes (idempotency.fingerprint)


async def read_wire_request(request: Request, *, max_body_bytes: int) -> WireRequest:
    """Decode an ingestion request; raise only PayloadTooLarge (413), UnsupportedMediaType (415) or
    BadRequest (400: credentials of the body and the query string that disagree)."""
    query = request.query_params
    query_data = query.get("data")
    params: dict[str, str] = {}

    if request.method in ("GET", "HEAD"):
        _merge_query(params, query)
        if query_data is None:
            return WireRequest(params, None, "missing data parameter")
        return WireRequest(
            params,
            *_decode_data(query_data),
            size=len(query_data),
            content=query_data.encode("utf-8", "surrogatepass"),
        )

    kind = _body_kind(request.headers.get("content-type", ""))
    inflate = _needs_inflate(request.headers.get("content-encoding", ""))
    _check_declared_length(request.headers.get("content-length"), max_body_bytes)
    try:
        body = await _read_body(request, max_body_bytes)
    except ClientDisconnect:
        _merge_query(params, query)
        return WireRequest(params, None, "the client disconnected before sending the whole body")
    if inflate and body:
        try:
            body = _inflate(body, max_body_bytes)
        except zlib.error:
            _merge_query(params, query)
            return WireRequest(params, None, "body is not valid gzip")
    if body.startswith(_BOM):
        body = body[len(_BOM) :]

    if _first_char(body) == b"":
        _merge_query(params, query)
        if query_data is not None:
            return WireRequest(
                params, *_decode_data(query_data), content=query_data.encode("utf-8", "surrogatepass")
            )
        return WireRequest(params, None, "empty body")

    if kind == "sniff":
        kind = "json" if _looks_like_json(body) else "form"
    if kind == "form":
        wire = _read_form(body, params, query)
    else:
        _merge_query(params, query)
        wire = WireRequest(params, *_parse_body(body, ndjson_first=kind == "ndjson"))
    wire.size = len(body)
    wire.content = body
    return wire


# --- headers ------------------------------------------------------------------------------------------------


def _body_kind(content_type: str) -> BodyKind:
    media_type = content_type.split(";", 1)[0].strip().lower()
    kind = _CONTENT_TYPES.get(media_type)
    if kind is None and media_type.startswith("application/") and media_type.endswith("+json"):
        kind = "json"
    if kind is None:
        raise UnsupportedMediaType(
            f"unsupported content type {media_type!r}: use application/x-www-form-urlencoded, "
            "application/json, application/x-ndjson or text/plain"
        )
    return kind


def _needs_inflate(content_encoding: str) -> bool:
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return False
    if len(codings) == 1 and codings[0] in _CODINGS:
        return True
    raise UnsupportedMediaType(f"unsupported content encoding {content_encoding!r}: use gzip")


def _check_declared_length(content_length: str | None, limit: int) -> None:
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"body of {int(content_length)} bytes is over the limit of {limit} bytes")


# --- body ---------------------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, read chunk by chunk so that an oversized one stops at the limit."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


def _inflate(compressed: bytes, limit: int) -> bytes:
    """Decompress gzip/zlib (several gzip members allowed), never producing more than `limit` + 1 bytes."""
    pieces: list[bytes] = []
    size = 0
    data = compressed
    inflater = zlib.decompressobj(_INFLATE_WBITS)
    while True:
        piece = inflater.decompress(data, limit - size + 1)
        size += len(piece)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes after decompression")
        if piece:
            pieces.append(piece)
        if inflater.eof:
            rest = inflater.unused_data.lstrip(b"\x00")  # some writers pad after the last member
            if not rest:
                break
            data = rest
            inflater = zlib.decompressobj(_INFLATE_WBITS)
            continue
        data = inflater.unconsumed_tail
        if not data and not piece:
            raise zlib.error("truncated stream")
    if len(pieces) == 1:
        return pieces[0]
    return b"".join(pieces)


def _read_form(body: bytes, params: dict[str, str], query: QueryParams) -> WireRequest:
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        _merge_query(params, query)
        return WireRequest(params, None, "body is not valid UTF-8")
    data: str | None = None
    for name, value in fields:
        if name == "data":
            data = value
        else:
            params[name] = value
    for name in _CREDENTIALS:  # the query string wins, but it may not contradict the body about these
        if name in params and name in query and params[name].strip() != query[name].strip():
            raise BadRequest(f"{name}: the query string and the body name different values")
    _merge_query(params, query)
    if data is None:
        data = query.get("data")
    if data is None:
        return WireRequest(params, None, "missing data parameter")
    return WireRequest(params, *_decode_data(data))


def _merge_query(params: dict[str, str], query: QueryParams) -> None:
    for name, value in query.items():
        if name != "data":
            params[name] = value


# --- data ---------------------------------------------------------------------------------------------------


Decoded = tuple[list[Any] | None, str | None]


def _decode_data(value: str) -> Decoded:
    """A `data` value: JSON if it starts with `{` or `[` after white space, else base64 (either alphabet)."""
    first = _NON_SPACE.search(value)
    if first is None:
        return None, "data is empty"
    if first.group() in ("{", "["):
        return _parse_json(value, "data")
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        return None, _NOT_DECODABLE
    raw = raw.translate(_B64_REPAIR, _B64_DROP).rstrip(b"=")
    if len(raw) % 4 == 1:
        return None, _NOT_DECODABLE
    raw += b"=" * (-len(raw) % 4)
    try:
        decoded = binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        return None, _NOT_DECODABLE
    if decoded.startswith(_BOM):
        decoded = decoded[len(_BOM) :]
    if not _looks_like_json(decoded):
        return None, _NOT_DECODABLE
    return _parse_json(decoded, "data")


def _parse_json(text: bytes | str, what: str) -> Decoded:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    try:
        parsed = read_json(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"{what} is not valid JSON: {exc}"
    if isinstance(parsed, list):
        return parsed, None
    if isinstance(parsed, (dict, RejectedRecord)):
        return [parsed], None
    return None, _NOT_RECORDS


def _parse_body(body: bytes, *, ndjson_first: bool) -> Decoded:
    """A JSON or NDJSON body; when the declared form fails, the other is tried (the two never both parse
    a body to different records), and the declared form's error is reported if neither does."""
    first, second = (_parse_ndjson, _parse_whole) if ndjson_first else (_parse_whole, _parse_ndjson)
    records, error = first(body)
    if records is None and b"\n" in body.strip(_WHITESPACE):
        fallback, _ = second(body)
        if fallback is not None:
            return fallback, None
    return records, error


def _parse_whole(body: bytes) -> Decoded:
    return _parse_json(body, "body")


def _parse_ndjson(body: bytes) -> Decoded:
    records: list[Any] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if _first_char(line) == b"":
            continue
        try:
            parsed = read_json(line)
        except orjson.JSONDecodeError as exc:
            return None, f"line {number} is not valid JSON: {exc}"
        if isinstance(parsed, list):  # a line holding an array of records
            records.extend(parsed)
        else:
            records.append(parsed)
    return records, None


def _looks_like_json(data: bytes) -> bool:
    first = _first_char(data)
    return first == b"{" or first == b"["


def _first_char(data: bytes) -> bytes:
    """The first byte that is not white space (b"" if none), found without copying the body."""
    found = _NON_WHITESPACE.search(data)
    return found.group() if found else b""
