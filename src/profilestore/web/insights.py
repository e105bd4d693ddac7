"""Insights (`/insights`): events over time, total or unique users, by day, week or month, optionally broken
down by an event or profile property and filtered by a saved cohort (or an expression), as an SVG line chart
and the table of its numbers.

The form is a GET: the URL is the state (`event` repeated, `measure`, `unit`, `from_date`, `to_date`,
`breakdown_type` + `breakdown`, `cohort`, `where`).  The numbers come from query_events, the function of
`POST /api/events/query`, asked the same question (once with the time bucket, and once without it for each
series' unique users over the whole range); the event picker from query/events/names.py.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from psycopg import AsyncConnection
from pydantic import JsonValue, ValidationError

from profilestore.cohorts.service import list_cohorts
from profilestore.db.connections import database
from profilestore.deps import ReadPoolDep, SettingsDep
from profilestore.errors import BadRequest, ProfilestoreError
from profilestore.projects import list_projects
from profilestore.query.events.names import event_names, has_events
from profilestore.query.events.query import EventsQueryRequest, EventsQueryResponse, query_events
from profilestore.query.events.sql import parse_day
from profilestore.query.params import day_range, refuse_nul
from profilestore.settings import Settings
from profilestore.web.deps import WebDep, context
from profilestore.web.linechart import bucket_label, colour, line_chart
from profilestore.web.render import page

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 30
MAX_BUCKETS = 400  # points per line
MAX_EVENTS = 50  # events picked at once
MAX_GROUPS = 100_000  # the query's own ceiling
MAX_SERIES = 50  # rows of the table
MAX_LINES = 10  # lines of the chart
MEASURES = {"total": ("Total events", "event", "events"), "unique": ("Unique users", "user", "users")}
UNITS = ("day", "week", "month")
BREAKDOWNS = {"property": "properties", "user": "user"}


@dataclass
class Form:
    """The question as the query string has it (text, echoed back into the form as typed)."""

    events: list[str] = field(default_factory=list)
    measure: str = "total"
    unit: str = "day"
    from_date: str = ""
    to_date: str = ""
    breakdown_type: str = "property"
    breakdown: str = ""
    cohort: str = ""
    where: str = ""

    @classmethod
    def of(cls, request: Request, today: dt.date) -> Form:
        q = request.query_params
        first = today - dt.timedelta(days=DEFAULT_DAYS - 1)
        return cls(
            events=[e for e in dict.fromkeys(q.getlist("event")) if e],
            measure=q.get("measure") or "total",
            unit=q.get("unit") or "day",
            from_date=(q.get("from_date") or first.isoformat()).strip(),
            to_date=(q.get("to_date") or today.isoformat()).strip(),
            breakdown_type=q.get("breakdown_type") or "property",
            breakdown=(q.get("breakdown") or "").strip(),
            cohort=(q.get("cohort") or "").strip(),
            where=(q.get("where") or "").strip(),
        )


@dataclass
class Question:
    """The form, checked: every error names its parameter."""

    events: list[str]
    measure: str
    unit: str
    from_date: dt.date
    to_date: dt.date
    breakdown: str | None  # "properties.NAME" or "user.NAME"
    cohort: int | None
    where: str | None

    @classmethod
    def of(cls, form: Form, cohorts: dict[int, str]) -> Question:
        for name, value in vars(form).items():
            refuse_nul(name, value)
        if len(form.events) > MAX_EVENTS:
            raise BadRequest(f"event: at most {MAX_EVENTS} events at once")
        if form.measure not in MEASURES:
            raise BadRequest(f"measure: must be total or unique, got {form.measure[:40]!r}")
        if form.unit not in UNITS:
            raise BadRequest(f"unit: must be day, week or month, got {form.unit[:40]!r}")
        first, last = parse_day("from_date", form.from_date), parse_day("to_date", form.to_date)
        day_range(first, last)
        if len(buckets(first, last, form.unit)) > MAX_BUCKETS:
            raise BadRequest(
                f"to_date: a chart has at most {MAX_BUCKETS} points; choose a shorter range or a longer unit"
            )
        if form.breakdown_type not in BREAKDOWNS:
            raise BadRequest(f"breakdown_type: must be property or user, got {form.breakdown_type[:40]!r}")
        if len(form.breakdown) > 255:
            raise BadRequest("breakdown: a property name has at most 255 characters")
        cohort = None
        if form.cohort:
            if not form.cohort.isdigit() or int(form.cohort) not in cohorts:
                raise BadRequest(f"cohort: no cohort {form.cohort[:40]!r} in this project")
            cohort = int(form.cohort)
        return cls(
            events=form.events,
            measure=form.measure,
            unit=form.unit,
            from_date=first,
            to_date=last,
            breakdown=f"{BREAKDOWNS[form.breakdown_type]}.{form.breakdown}" if form.breakdown else None,
            cohort=cohort,
            where=form.where or None,
        )

    def request(self, *, over_time: bool) -> EventsQueryRequest:
        """The question as `POST /api/events/query` takes it: series keys (event, breakdown), then time."""
        group_by: list[dict[str, Any]] = []
        if self.events:
            group_by.append({"type": "event"})
        if self.breakdown:
            kind, name = self.breakdown.split(".", 1)
            group_by.append({"type": "property" if kind == "properties" else "user", "name": name})
        if over_time:
            group_by.append({"type": "time", "unit": self.unit})
        body = {
            "from_date": self.from_date,
            "to_date": self.to_date,
            "events": self.events or None,
            "where": self.where,
            "cohort": {"id": self.cohort} if self.cohort is not None else None,
            "group_by": group_by,
            "limit": MAX_GROUPS,
        }
        try:
            return EventsQueryRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "request"
            raise BadRequest(f"{name}: {first['msg']}") from None


def buckets(first: dt.date, last: dt.date, unit: str) -> list[dt.date]:
    """The first day of every bucket from `first` to `last` (weeks from Monday, months from the 1st)."""
    if unit == "week":
        day = first - dt.timedelta(days=first.weekday())
    elif unit == "month":
        day = first.replace(day=1)
    else:
        day = first
    out: list[dt.date] = []
    while day <= last and len(out) <= MAX_BUCKETS:
        out.append(day)
        if unit == "month":
            day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        else:
            day += dt.timedelta(days=7 if unit == "week" else 1)
    return out


def value_label(value: JsonValue) -> str:
    """A key as a series is named: text as itself, a missing value as `(not set)`, anything else as JSON."""
    if value is None:
        return "(not set)"
    if isinstance(value, str):
        return value or '""'
    return orjson.dumps(value).decode()


@dataclass
class Series:
    keys: list[JsonValue]
    label: str
    values: list[int]
    total: int
    colour: str | None = None

    @property
    def keys_json(self) -> str:
        return orjson.dumps(self.keys).decode()


@dataclass
class Answer:
    unit: str
    buckets: list[dt.date]
    series: list[Series]
    total: int
    notes: list[str]

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Each bucket's first day and its name, the year on the first and wherever it changes."""
        out: list[tuple[str, str]] = []
        year = None
        for day in self.buckets:
            out.append((day.isoformat(), bucket_label(day, self.unit, year=day.year != year)))
            year = day.year
        return out


async def answer(
    conn: AsyncConnection[Any], project_id: int, q: Question, *, now: float, settings: Settings
) -> Answer:
    timed = await query_events(conn, project_id, q.request(over_time=True), now=now, settings=settings)
    field_ = "unique" if q.measure == "unique" else "count"
    days = buckets(q.from_date, q.to_date, q.unit)
    index = {d.isoformat(): i for i, d in enumerate(days)}
    found: dict[str, Series] = {}
    for group in timed.results:
        keys = group.keys[:-1]
        key = orjson.dumps(keys).decode()
        series = found.get(key)
        if series is None:
            label = " · ".join(value_label(k) for k in keys) or "All events"
            series = found[key] = Series(keys, label, [0] * len(days), 0)
        series.values[index[str(group.keys[-1])]] = getattr(group, field_)
    notes = []
    if timed.truncated and timed.results:
        found.pop(orjson.dumps(timed.results[-1].keys[:-1]).decode(), None)  # it may be incomplete
        notes.append(f"Over {MAX_GROUPS:,} groups: only the first series, in key order, are shown.")
    await _totals(conn, project_id, q, timed, found, now=now, settings=settings)
    ranked = sorted(found.values(), key=lambda s: -s.total)
    if q.events and not q.breakdown:  # a picked event without events in the range is a line at zero
        missing = [e for e in q.events if orjson.dumps([e]).decode() not in found]
        ranked += [Series([e], e, [0] * len(days), 0) for e in missing]
    if len(ranked) > MAX_SERIES:
        notes.append(f"{len(ranked):,} series: the table shows the {MAX_SERIES} largest.")
    if len(ranked) > MAX_LINES:
        notes.append(f"The chart draws the {MAX_LINES} largest series.")
    for i, series in enumerate(ranked[:MAX_LINES]):
        series.colour = colour(i)
    return Answer(q.unit, days, ranked[:MAX_SERIES], getattr(timed.total, field_), notes)


async def _totals(
    conn: AsyncConnection[Any],
    project_id: int,
    q: Question,
    timed: EventsQueryResponse,
    found: dict[str, Series],
    *,
    now: float,
    settings: Settings,
) -> None:
    """Each series' total over the range: the sum of its events; its users counted once (a second query)."""
    if q.measure == "total":
        for series in found.values():
            series.total = sum(series.values)
    elif not q.events and not q.breakdown:
        for series in found.values():
            series.total = timed.total.unique
    else:
        overall = await query_events(conn, project_id, q.request(over_time=False), now=now, settings=settings)
        for group in overall.results:
            match = found.get(orjson.dumps(group.keys).decode())
            if match is not None:
                match.total = group.unique


def title(q: Question, cohorts: dict[int, str]) -> str:
    parts = [MEASURES[q.measure][0], ", ".join(q.events) if q.events else "all events", f"by {q.unit}"]
    if q.breakdown:
        kind, name = q.breakdown.split(".", 1)
        parts.append(f"broken down by {'event' if kind == 'properties' else 'profile'} property {name}")
    if q.cohort is not None:
        parts.append(f"in cohort {cohorts[q.cohort]}")
    if q.where:
        parts.append(f"where {q.where}")
    return " · ".join(parts)


@router.get("/insights")
async def insights(request: Request, web: WebDep, pool: ReadPoolDep, settings: SettingsDep) -> Response:
    now = time.time()
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    form = Form.of(request, today)
    error = None
    result = None
    question = None
    async with database(pool, settings) as conn:
        if not await has_events(conn, web.project_id):
            token = next((p.token for p in await list_projects(conn) if p.id == web.project_id), "YOUR_TOKEN")
            return page(request, "insights.html", context(web, empty=True, token=token, form=form))
        cohorts = {c.id: c.name for c in await list_cohorts(conn, web.project_id)}
        try:
            question = Question.of(form, cohorts)
            result = await answer(conn, web.project_id, question, now=now, settings=settings)
        except ProfilestoreError as exc:
            error = exc.message
        first, last = (
            (question.from_date, question.to_date)
            if question
            else (today - dt.timedelta(days=DEFAULT_DAYS - 1), today)
        )
        names, more_names = await event_names(conn, web.project_id, first, last)
    names += [e for e in form.events if e not in names]
    chart = None
    if result is not None and question is not None and result.total:
        label, one, many = MEASURES[question.measure]
        chart = line_chart(
            result.buckets,
            [(s.label, s.values) for s in result.series[:MAX_LINES]],
            unit=question.unit,
            y_title=label,
            nouns=(one, many),
            label=f"{title(question, cohorts)}, {question.from_date} to {question.to_date} (UTC)",
        )
    return page(
        request,
        "insights.html",
        context(
            web,
            empty=False,
            form=form,
            question=question,
            result=result,
            chart=chart,
            heading=title(question, cohorts) if question and result else "No chart",
            names=names,
            more_names=more_names,
            cohorts=cohorts,
            error=error,
            measures=MEASURES,
        ),
        status_code=400 if error else 200,
    )
