"""One import, from the file to the stored profiles: the same code for the command and the HTTP API's jobs.

1. The header (or `columns`) and the options make the plan (plan.py): identifier, properties, forced types.
2. With `types=infer`, a first pass over the file finds each column's type (columns.py) and counts the rows.
3. A second pass turns rows into `$set`s, merges repeats of an identifier within a chunk (the later value
   wins), and hands each chunk to Postgres (sql.py): one transaction a chunk.
Rows that cannot be imported are skipped with a warning naming their line; everything else is imported.
Runs on a plain (synchronous) connection of its own: the command's, or the job process's.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from profilestore.imports import sql
from profilestore.imports.chunks import Chunk, in_thread, prepare
from profilestore.imports.columns import Inference
from profilestore.imports.plan import ImportOptions, Plan, make_plan, resolve_types
from profilestore.imports.reading import (
    SNIFF_BYTES,
    FileError,
    Lines,
    Problem,
    Row,
    Source,
    check_head,
    rows,
    set_field_limit,
    sniff,
)
from profilestore.settings import Settings

# What the summary's `skipped` counts (the rest of the warnings' kinds are notes on imported rows).
SKIP_KINDS = frozenset(
    {
        "ragged",
        "empty_id",
        "bad_id",
        "too_large",
        "bad_value",
        "encoding",
        "nul",
        "malformed",
        "file",
        "exists",
        "missing",
    }
)


SCAN_BATCH = 20_000  # rows whose columns inference looks at together


class Interrupted(Exception):
    """The import was asked to stop between two chunks (what was committed stays)."""


@dataclass
class Progress:
    phase: str  # "scanning" (finding types) or "importing"
    rows_done: int
    rows_total: int | None
    bytes_done: int
    bytes_total: int


@dataclass
class Summary:
    mode: str
    kind: str
    dry_run: bool
    identifier: str = ""
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    columns: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cohort_id: int | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "profile_type": "group" if self.kind == "group" else "user",
            "dry_run": self.dry_run,
            "identifier": self.identifier,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "warnings_by_kind": dict(sorted(self.warnings.items())),
            "columns": self.columns,
            "notes": self.notes,
            "cohort_id": self.cohort_id,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds > 0 else None,
        }


@dataclass
class Hooks:
    """How the caller sees an import go: progress after each chunk, and a way to stop it between chunks."""

    progress: Callable[[Progress], None] = lambda p: None
    should_stop: Callable[[], bool] = lambda: False


def open_rows(
    path: str, options: ImportOptions, settings: Settings
) -> tuple[Source, Iterator[Row | Problem], list[str]]:
    """The file's rows after its header, and the header (or the given column names)."""
    source = Source(path)
    try:
        head = source.head(SNIFF_BYTES)
        check_head(head)
        delimiter = options.delimiter or sniff(head, options.encoding)[0]
        source.close()
        source = Source(path)
        items = rows(Lines(source.stream, options.encoding, settings.max_import_line_bytes), delimiter)
        headers = options.columns
        if options.header:
            first = next(items, None)
            if first is None:
                raise FileError("the file has no rows")
            if isinstance(first, Problem):
                raise FileError(f"the header cannot be read: {first.message}")
            headers = headers or first.cells
        assert headers is not None
        return source, items, list(headers)
    except BaseException:
        source.close()
        raise


def scan(
    path: str, options: ImportOptions, settings: Settings, plan: Plan, hooks: Hooks
) -> tuple[Inference, int]:
    """The first pass: each column's type, and the number of rows."""
    infer = [t.index for t in plan.targets if t.kind is None]
    inference = Inference(len(plan.headers), settings.max_value_depth, settings.max_import_cell_bytes, infer)
    source, items, _ = open_rows(path, options, settings)
    count, width = 0, len(plan.headers)
    batch: list[list[str]] = []
    with source:
        for item in items:
            count += 1
            if isinstance(item, Row) and len(item.cells) == width:
                batch.append(item.cells)
            if count % SCAN_BATCH == 0:
                inference.add_rows(batch)
                batch = []
                hooks.progress(Progress("scanning", count, None, source.position(), source.size))
                if hooks.should_stop():
                    raise Interrupted()
        inference.add_rows(batch)
    return inference, count


class Importer:
    """Runs one import job on `conn` (autocommit; a transaction per chunk)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        settings: Settings,
        project_id: int,
        job_id: int,
        options: ImportOptions,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.project_id = project_id
        self.job_id = job_id
        self.options = options
        self.summary = Summary(options.mode, "group" if options.group_key else "profile", options.dry_run)
        self.started = time.time()
        self.rows_total: int | None = None
        self.bytes_total: int | None = None
        self.bytes_done = 0

    def run(self, path: str, hooks: Hooks | None = None) -> Summary:
        hooks = hooks or Hooks()
        set_field_limit(self.settings.max_import_line_bytes)
        source, items, headers = open_rows(path, self.options, self.settings)
        source.close()
        plan = make_plan(headers, self.options, self.settings)
        inference = None
        if self.options.types == "infer" and any(t.kind is None for t in plan.targets):
            inference, self.rows_total = scan(path, self.options, self.settings, plan, hooks)
        resolve_types(plan, self.options, inference, self.settings)
        self.summary.identifier = plan.id_rule
        self.summary.columns = [
            {"column": t.header, "property": t.prop, "type": str(t.kind)} for t in plan.targets
        ]
        self.summary.notes = plan.notes
        with self.conn.cursor() as cur:
            cur.execute(sql.TEMP_TABLES)
        cohort_id = self._cohort() if self.options.cohort and not self.options.dry_run else None
        self.summary.cohort_id = cohort_id
        source, items, _ = open_rows(path, self.options, self.settings)
        with source:
            self._chunks(plan, items, source, cohort_id, hooks)
        self.summary.seconds = time.time() - self.started
        return self.summary

    def _cohort(self) -> int:
        assert self.options.cohort is not None
        with self.conn.cursor() as cur:
            found = cur.execute(sql.FIND_COHORT, (self.project_id, self.options.cohort)).fetchone()
            if found is not None:
                if not found[1]:
                    raise FileError(
                        f"cohort {self.options.cohort!r} exists and is not static; choose another name"
                    )
                return int(found[0])
            description = "imported from a CSV file"
            row = cur.execute(
                sql.CREATE_COHORT, (self.project_id, self.options.cohort, description)
            ).fetchone()
            assert row is not None
            return int(row[0])

    def _chunks(
        self, plan: Plan, items: Iterator[Row | Problem], source: Source, cohort_id: int | None, hooks: Hooks
    ) -> None:
        self.bytes_total = source.size
        base: dict[str, Any] = {"p": self.project_id, "t": self.started, "it": True}
        if plan.kind == "group":
            base["k"] = self.options.group_key
        for chunk in in_thread(prepare(plan, items, source, self.settings, base)):
            if hooks.should_stop():
                raise Interrupted()
            self._write(plan, chunk, cohort_id)
            hooks.progress(
                Progress("importing", self.summary.rows, self.rows_total, self.bytes_done, source.size)
            )

    def _write(self, plan: Plan, chunk: Chunk, cohort_id: int | None) -> None:
        names = sql.TABLES[plan.kind]
        params: dict[str, Any] = {
            "mode": self.options.mode,
            "t": self.started,
            "project_id": self.project_id,
            "group_key": self.options.group_key,
        }
        summary = self.summary
        summary.rows += chunk.rows
        self.bytes_done = max(self.bytes_done, chunk.position)
        problems = chunk.problems
        with self.conn.transaction(), self.conn.cursor() as cur:
            if chunk.records:
                # A chunk is a few thousand index lookups: never a hash join over the whole table (what the
                # planner picks for a temporary table it has no statistics of), and no JIT for it.
                cur.execute(sql.SESSION)
                with cur.copy(sql.COPY_STAGE) as copy:
                    copy.write(chunk.payload)
                cur.execute(sql.CLASSIFY.format(**names), params)
                for line, ident, kind, prop, other in cur.execute(sql.WARNINGS).fetchall():
                    problems.append(_warning(line, kind, plan, ident, prop, other))
                counts = cur.execute(sql.COUNTS).fetchone()
                assert counts is not None
                created, updated, unchanged, exists, missing = (int(c) for c in counts)
                summary.created += created
                summary.updated += updated
                summary.unchanged += unchanged
                summary.skipped.update({k: v for k, v in (("exists", exists), ("missing", missing)) if v})
                if not self.options.dry_run:
                    cur.execute(sql.APPLY.format(**names), {**params, **self._limits()})
                    if cohort_id is not None:
                        cur.execute(sql.COHORT_MEMBERS, {"cohort_id": cohort_id})
                cur.execute(sql.SEEN)
            for problem in problems:
                summary.warnings[problem.kind] += 1
                if problem.kind in SKIP_KINDS and problem.kind not in ("exists", "missing"):
                    summary.skipped[problem.kind] += 1
            if problems:
                with cur.copy(sql.COPY_WARNINGS) as copy:
                    for p in problems:
                        copy.write_row((self.job_id, p.line, p.kind, p.column, p.message))
            summary.seconds = time.time() - self.started
            cur.execute(
                sql.PROGRESS,
                {
                    "id": self.job_id,
                    "rows_done": summary.rows,
                    "rows_total": self.rows_total,
                    "bytes_done": self.bytes_done,
                    "bytes_total": self.bytes_total,
                    "summary": Jsonb(summary.as_json()),
                },
            )

    def _limits(self) -> dict[str, Any]:
        s = self.settings
        return {
            "now": time.time(),
            "tomb_secs": s.tombstone_days * 86400.0,
            "max_props": s.max_profile_properties,
            "max_bytes": s.max_profile_bytes,
            "max_warnings": s.max_warnings_per_request,
            "max_list_work": s.max_list_elements_per_request,
        }


def _warning(line: int, kind: str, plan: Plan, ident: str, prop: str | None, other: int | None) -> Problem:
    id_name = "$group_id" if plan.kind == "group" else "$distinct_id"
    if kind == "exists":
        return Problem(
            line, kind, f"line {line}: {id_name} {ident!r} already has a profile (create mode); skipped"
        )
    if kind == "missing":
        return Problem(line, kind, f"line {line}: {id_name} {ident!r} has no profile (update mode); skipped")
    if kind == "duplicate":
        assert other is not None
        return Problem(
            line, kind, f"line {line}: {id_name} {ident!r} is also on line {other}; the later values win"
        )
    return Problem(
        line,
        kind,
        f"line {line}: {prop!r} of {ident!r} was not changed: an update newer than this import's start"
        " is kept",
        None,
    )


def connect(url: str) -> psycopg.Connection[Any]:
    from profilestore.db.engine import libpq_dsn

    return psycopg.connect(libpq_dsn(url), autocommit=True)
