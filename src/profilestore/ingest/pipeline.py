"""The one skeleton of every ingestion endpoint, from the request to the answer.

    handle(request, kind, ...)      read the body in any SDK form (wire.py), ingest, answer (responses.py)
    ingest(kind, records, ...)      limits -> validate -> resolve project tokens -> one batch -> Outcome

A `Kind` is what differs between profile updates (profiles/: /engage, /groups) and events (events/: /track,
/import): the record's shape and rules, how its project is named, and the statement that applies a batch.
Everything else is here, once.  A record that breaks a rule costs only itself; if Postgres refuses the batch
as a whole (a value it cannot store), the kind applies it again one profile or event at a time, each under
a savepoint, so only the offending records fail, each with a message in plain words mapped from the
SQLSTATE (`refusal`: Postgres's own text goes to the log, never to the client).  The database being
unreachable raises DatabaseUnavailable (503, nothing applied: a retry is safe).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import orjson
import psycopg
from fastapi import Request, Response
from psycopg import AsyncConnection
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from profilestore.db.connections import Connector
from profilestore.errors import ProfilestoreError
from profilestore.ingest import idempotency
from profilestore.ingest.limits import RateLimiter
from profilestore.ingest.responses import Outcome, RecordError, ingest_error_response, ingest_response
from profilestore.ingest.wire import RejectedRecord, read_wire_request
from profilestore.ops import metrics
from profilestore.projects import TokenCache
from profilestore.settings import Settings

log = logging.getLogger("profilestore")

NESTED_TOO_DEEP = "nests too deeply to be read"


class Indexed(Protocol):
    index: int  # the record's index in its request


Item = TypeVar(
    "Item", bound=Indexed
)  # one valid record, normalised (profiles.records.Update, events.records.Event)
Batch = TypeVar("Batch")  # what one statement applies


class Kind(ABC, Generic[Item, Batch]):
    """One family of ingestion endpoints, for one request (it holds the settings it validates against)."""

    id_field: str  # the id failures name: "$distinct_id", "$group_id" or "$insert_id"
    noun: str  # "record" or "event", in messages
    token_field: str  # where a record names its project: "$token" or "properties.token"
    adapter: TypeAdapter[Any]  # the record's shape

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def error_id(self, record: Any) -> str | None:
        """The raw record's id (as `id_field` names it) as text, for error reports; None without one."""

    @abstractmethod
    def field_error(self, error: ErrorDetails) -> tuple[str, str]:
        """A pydantic error of the shape -> (field path, message in plain words)."""

    @abstractmethod
    def normalise(self, index: int, record: Any, now: float, body_bytes: int) -> Item | RecordError:
        """A record of the right shape -> the valid item, or the rule it breaks."""

    @abstractmethod
    def token(self, item: Item) -> str | None:
        """The project token the item carries."""

    @abstractmethod
    def item_id(self, item: Item) -> str | None:
        """The item's id (as `id_field` names it), for error reports."""

    def prepare(self, pairs: list[tuple[int, Item]]) -> list[tuple[int, Item]]:
        """(project_id, item) pairs -> the pairs to apply (events drop duplicates here)."""
        return pairs

    @abstractmethod
    def build(self, pairs: list[tuple[int, Item]]) -> Batch:
        """The pairs as one statement's parameters."""

    @abstractmethod
    async def apply(self, conn: AsyncConnection[Any], batch: Batch, now: float) -> None:
        """The whole batch in one statement (autocommit: one implicit transaction)."""

    @abstractmethod
    async def apply_one_by_one(
        self, conn: AsyncConnection[Any], batch: Batch, now: float
    ) -> list[tuple[int, str | None, str]]:
        """After Postgres refused the batch: one transaction, a savepoint per profile or event, in the batch's
        lock order.  Returns (record index, id, message: `refusal`) of every refused record."""


def validate(
    kind: Kind[Item, Batch], records: list[Any], *, now: float, body_bytes: int
) -> tuple[list[Item], list[RecordError]]:
    """Valid items (in request order) and the errors of the invalid records."""
    settings = kind.settings
    items: list[Item] = []
    errors: list[RecordError] = []
    check_size = body_bytes > settings.max_record_bytes
    for index, record in enumerate(records):
        problem = precheck(kind, index, record, check_size=check_size)
        if problem:
            errors.append(problem)
            continue
        try:
            shaped = kind.adapter.validate_python(record)
        except ValidationError as exc:
            path, message = kind.field_error(exc.errors()[0])
            errors.append(RecordError(index, kind.id_field, kind.error_id(record), path, message))
            continue
        result = kind.normalise(index, shaped, now, body_bytes)
        if isinstance(result, RecordError):
            errors.append(result)
        else:
            items.append(result)
    return items, errors


def precheck(kind: Kind[Any, Any], index: int, record: Any, *, check_size: bool) -> RecordError | None:
    """What every ingested record is checked for before its shape: what decoding refused (decode.py: a
    number that would not be stored exactly, a NUL, a lone surrogate, ...), not being a JSON object, its
    size."""
    if isinstance(record, RejectedRecord):
        id_value = printable(kind.error_id(record.record))
        return RecordError(index, kind.id_field, id_value, record.path, record.message)
    if not isinstance(record, dict):
        return RecordError(index, kind.id_field, None, "", "must be a JSON object")
    max_bytes = kind.settings.max_record_bytes
    if check_size:
        try:
            size = len(orjson.dumps(record))
        except orjson.JSONEncodeError:  # nested past orjson's 254 levels: too deep for any rule here
            return RecordError(index, kind.id_field, kind.error_id(record), "", NESTED_TOO_DEEP)
        if size > max_bytes:
            message = f"the {kind.noun} is over {max_bytes} bytes"
            return RecordError(index, kind.id_field, kind.error_id(record), "", message)
    return None


def printable(text: str | None) -> str | None:
    """`text` with any lone surrogate (never sent as such, but read from bytes that are not UTF-8) escaped,
    so that an answer naming it can be written."""
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode()


async def ingest(
    kind: Kind[Item, Batch],
    records: list[Any],
    *,
    body_bytes: int,
    now: float,
    tokens: TokenCache,
    connect: Connector,
    project_id: int | None = None,
    limiter: RateLimiter | None = None,
) -> Outcome:
    """Applies a request's valid records in one statement.  `project_id`: the project the request's
    credentials name (/import); else each record's token names its project."""
    limit = kind.settings.max_records
    items, errors = validate(kind, records[:limit], now=now, body_bytes=body_bytes)
    message = f"a request holds at most {limit} {kind.noun}s"
    errors.extend(
        RecordError(i, kind.id_field, kind.error_id(r), "", message)
        for i, r in enumerate(records[limit:], limit)
    )
    pairs: list[tuple[int, Item]] = []
    if project_id is not None:
        pairs = [(project_id, item) for item in items]
    elif items:
        project_ids = await tokens.resolve(
            connect, {t for item in items if (t := kind.token(item)) is not None}
        )
        for item in items:
            token = kind.token(item)
            pid = project_ids.get(token) if token is not None else None
            if pid is None:
                field = kind.token_field
                errors.append(
                    RecordError(item.index, kind.id_field, kind.item_id(item), field, "unknown project token")
                )
            else:
                pairs.append((pid, item))
    if limiter is not None:  # before anything is applied: a refused request applies nothing
        limiter.take(dict(Counter(pid for pid, _ in pairs)))
    pairs = kind.prepare(pairs)
    if pairs:
        batch = kind.build(pairs)
        async with connect() as conn:
            try:
                async with _savepoint_in_transaction(conn):
                    await kind.apply(conn, batch, now)
            except REFUSED as exc:
                log.warning("a batch was refused by the database (%s); applying it record by record", exc)
                for index, id_value, reason in await kind.apply_one_by_one(conn, batch, now):
                    errors.append(RecordError(index, kind.id_field, id_value, "", reason))
    errors.sort(key=lambda e: e.index)
    return Outcome(total=len(records), failures=errors, project_ids={pid for pid, _ in pairs})


def _savepoint_in_transaction(conn: AsyncConnection[Any]) -> contextlib.AbstractAsyncContextManager[Any]:
    """Inside a transaction (an Idempotency-Key's: idempotency.py), a savepoint, so that a batch Postgres
    refuses can be applied again record by record in the same transaction; in autocommit (every other
    request), nothing: the statement is its own transaction, and the hot path pays no BEGIN/COMMIT."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return contextlib.nullcontext()
    return conn.transaction()


# What Postgres raises for a value it cannot take (a data exception, SQLSTATE class 22; a program limit,
# class 54: too large, nested too deeply): the batch is then applied record by record, and these records fail.
REFUSED = (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded)
# SQLSTATE -> what the failure says, in plain words (never Postgres's own text: that goes to the log).
_REFUSALS = {
    "22003": "a number Postgres cannot store (out of range)",
    "22008": "a time Postgres cannot store (out of range)",
    "22007": "a time Postgres cannot read",
    "22021": "a character Postgres cannot store",
    "22P05": "a character Postgres cannot store",
    "22001": "a value too long for Postgres",
    "54000": "a value too large for Postgres",
    "54001": "a value nested too deeply for Postgres",
}


def refusal(exc: psycopg.Error) -> str:
    """The message of a record Postgres refused, mapped from the error's SQLSTATE; the error's own text
    is logged here, server-side, and never answered."""
    state = exc.sqlstate or ""
    log.warning("a record was refused by the database: SQLSTATE %s: %s", state, exc.diag.message_primary)
    reason = _REFUSALS.get(state)
    if reason is None:
        reason = "a value Postgres cannot store" if state.startswith("22") else "a value Postgres refused"
    return f"refused by the database: {reason}"


Authenticate = Callable[[Request, dict[str, str]], Awaitable[int]]


async def handle(
    request: Request,
    kind: Kind[Any, Any],
    *,
    tokens: TokenCache,
    connect: Connector,
    authenticate: Authenticate | None = None,
    strict_unless_verbose: bool = False,
) -> Response:
    """One ingestion request: decode the body in any SDK form (wire.py); `authenticate` it when the endpoint
    takes credentials (/import: the project they name); `ingest` its records; answer in Mixpanel's shapes,
    strict unless the request asks for `verbose` when `strict_unless_verbose`.  An unreadable body is answered
    without applying anything.  Past the process's bound on writes in flight, a 503 before the body is read
    (limits.py)."""
    params: dict[str, str] = dict(request.query_params)
    try:
        with request.app.state.writes.slot():
            return await _handle(request, kind, tokens, connect, authenticate, strict_unless_verbose)
    except ProfilestoreError as exc:
        return ingest_error_response(params, exc)


async def _handle(
    request: Request,
    kind: Kind[Any, Any],
    tokens: TokenCache,
    connect: Connector,
    authenticate: Authenticate | None,
    strict_unless_verbose: bool,
) -> Response:
    now = time.time()
    params: dict[str, str] = dict(request.query_params)
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        key = idempotency.key_of(request)
        wire = await read_wire_request(request, max_body_bytes=kind.settings.max_body_bytes)
        params = wire.params
        project_id = await authenticate(request, params) if authenticate is not None else None
        strict_default = strict_unless_verbose and "verbose" not in params
        if wire.records is None:  # nothing applied: answered again the same way, with or without a key
            outcome = Outcome(total=0, failures=[], body_error=wire.error)
            return ingest_response(params, outcome, strict_default=strict_default)
        records = wire.records

        async def run(connect: Connector) -> tuple[Response, set[int]]:
            outcome = await ingest(
                kind,
                records,
                body_bytes=wire.size,
                now=now,
                tokens=tokens,
                connect=connect,
                project_id=project_id,
                limiter=limiter,
            )
            count(request, records, outcome)
            return ingest_response(params, outcome, strict_default=strict_default), outcome.project_ids

        if key is None:
            return (await run(connect))[0]
        endpoint = request.url.path.rstrip("/")
        async with idempotency.claimed(
            connect,
            endpoint=endpoint,
            scope=idempotency.scope_of(records, kind.token_field, project_id),
            key=key,
            fingerprint=idempotency.fingerprint(request, wire),
            hours=kind.settings.idempotency_hours,
        ) as claim:
            if claim.replay is not None:
                metrics.REPLAYS.labels(endpoint).inc()
                return claim.replay
            answer, project_ids = await run(claim.connector())
            await claim.store(answer, project_ids)
        return answer
    except ProfilestoreError as exc:
        return ingest_error_response(params, exc)


def count(request: Request, records: list[Any], outcome: Outcome) -> None:
    """The request's records in the metrics (ops/metrics.py): accepted, and rejected by reason."""
    endpoint = request.url.path.rstrip("/")
    metrics.BATCH_RECORDS.labels(endpoint).observe(len(records))
    reasons = {f.index: metrics.rejection(f.message) for f in outcome.failures}
    metrics.RECORDS.labels(endpoint, "accepted").inc(outcome.total - len(reasons))
    for reason in set(reasons.values()):
        metrics.RECORDS.labels(endpoint, reason).inc(sum(1 for r in reasons.values() if r == reason))


def id_text(raw: Any) -> str:
    """An id as text: strings as they are, a whole float as an integer, anything else as its JSON (as
    Python writes what orjson cannot: a Decimal, a value nested past its limit)."""
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, str):
        return raw
    try:
        return orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return "(not shown: nested too deeply)" if isinstance(raw, dict | list) else str(raw)


def nests_deeper(value: Any, levels: int) -> bool:
    """Whether lists and objects nest in `value` more than `levels` deep ([1] is 1 level, [[1]] 2): a walk
    level by level, without recursion, that stops at `levels` + 1 whatever the value's depth."""
    level = [value]
    depth = 0
    while level:
        depth += 1
        if depth > levels:
            return True
        below: list[Any] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            below.extend(v for v in items if type(v) is dict or type(v) is list)
        level = below
    return False


def parse_time(value: int | float | str | None, now: float, future_clamp: float) -> float:
    """$time -> epoch seconds: seconds or milliseconds (below 1e11 is seconds) or ISO 8601; clamped."""
    if value is None:
        return now
    if isinstance(value, str):
        text = value.strip()
        try:
            return parse_time(float(text), now, future_clamp)  # epoch seconds or ms sent as text
        except ValueError:
            pass
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        t = stamp.timestamp()
    else:
        t = float(value)
        if not math.isfinite(t):
            raise ValueError("not finite")
        if abs(t) >= 1e11:
            t /= 1000.0
    return now if t > now + future_clamp else t
