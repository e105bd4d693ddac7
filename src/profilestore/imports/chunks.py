"""Rows to chunks ready for COPY, prepared in a thread of their own while Postgres writes the chunk before.

A chunk holds at most `import_chunk_rows` identifiers, each once (prepare merges repeats; the database's
step reports them as duplicates, sql.py).  Its records are `/engage`'s `fast` records (a `$set`
with its `$time`, and `$ignore_time`: an import does not touch `$last_seen`), already in COPY's text format,
so the writing thread only sends bytes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from profilestore.imports.plan import Plan, RowMaker
from profilestore.imports.reading import Problem, Row, Source
from profilestore.settings import Settings

T = TypeVar("T")


@dataclass
class Chunk:
    payload: bytes  # COPY text rows: last line, identifier, every line, record
    records: int
    rows: int  # rows of the file this chunk read (problems included)
    position: int  # bytes of the file read after this chunk
    problems: list[Problem] = field(default_factory=list)


def _copy_text(text: str) -> str:
    """A value in COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def prepare(
    plan: Plan, items: Iterator[Row | Problem], source: Source, settings: Settings, base: dict[str, Any]
) -> Iterator[Chunk]:
    """The file's rows as chunks; `base` is what every record carries (project, `$time`, group key).

    An identifier's rows within a chunk are merged into one record, the later values winning (as they would
    applied one after the other), which keeps every line: the database's step warns per line (sql.py), so
    the warnings do not depend on the chunk size, and re-running the file writes nothing.  A merge that would
    pass `/engage`'s record size starts the next chunk instead."""
    maker = RowMaker(plan, settings)
    limit, max_record = settings.import_chunk_rows, settings.max_record_bytes
    t = base["t"]
    chunk: dict[str, list[Any]] = {}  # identifier -> [lines, properties, size in bytes or None]
    problems: list[Problem] = []
    rows = 0

    def done() -> Chunk:
        out = []
        for ident, (lines, props, _) in chunk.items():
            rec = orjson.dumps({**base, "d": ident, "set": props, "ft": dict.fromkeys(props, t)}).decode()
            numbers = ",".join(map(str, lines))
            out.append(f"{lines[-1]}\t{_copy_text(ident)}\t{{{numbers}}}\t{_copy_text(rec)}\n")
        return Chunk("".join(out).encode(), len(chunk), rows, source.position(), problems)

    for item in items:
        rows += 1
        made = maker.make(item) if isinstance(item, Row) else item
        if isinstance(made, Problem):
            problems.append(made)
            continue
        ident, props, notes = made
        if notes:
            problems.extend(notes)
        same = chunk.get(ident)
        if same is not None:
            size = same[2] if same[2] is not None else len(orjson.dumps(same[1]))
            size += len(orjson.dumps(props))
            if size <= max_record:
                same[0].append(item.line)
                same[1].update(props)
                same[2] = size
                continue
            yield done()
            chunk, problems, rows = {}, [], 0
        chunk[ident] = [[item.line], props, None]
        if len(chunk) >= limit:
            yield done()
            chunk, problems, rows = {}, [], 0
    yield done()


def in_thread(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a thread at most `depth` ahead (an error there is raised here)."""
    channel: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                channel.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put("error", exc)

    thread = threading.Thread(target=produce, name="import-rows", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = channel.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
