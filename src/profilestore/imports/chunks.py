"""Rows to chunks ready for COPY, prepared in a thread of their own while Postgres writes the chunk before.

A chunk holds at most `import_chunk_rows` identifiers: a row whose identifier is already in the chunk is
merged into it (its values win, as they would applied one after the other) with a `duplicate` warning.  Its
records are `/engage`'s `fast` records (a `$set` with its `$time`, and `$ignore_time`: an import does not
touch `$last_seen`), already in COPY's text format, so the writing thread only sends bytes.
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
    payload: bytes  # COPY text rows: line, identifier, rows merged, record
    records: int
    rows: int  # rows of the file this chunk read (problems included)
    position: int  # bytes of the file read, after this chunk
    problems: list[Problem] = field(default_factory=list)


def _copy_text(text: str) -> str:
    """A value in COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def duplicate(line: int, id_name: str, ident: str, earlier: int) -> Problem:
    return Problem(
        line, "duplicate", f"line {line}: {id_name} {ident!r} is also on line {earlier}; the later values win"
    )


def prepare(
    plan: Plan, items: Iterator[Row | Problem], source: Source, settings: Settings, base: dict[str, Any]
) -> Iterator[Chunk]:
    """The file's rows as chunks; `base` is what every record carries (project, `$time`, group key)."""
    maker = RowMaker(plan, settings)
    limit = settings.import_chunk_rows
    t = base["t"]
    chunk: dict[str, list[Any]] = {}  # identifier -> [line, rows merged, properties]
    problems: list[Problem] = []
    rows = 0

    def done() -> Chunk:
        out = []
        for ident, (line, n, props) in chunk.items():
            rec = orjson.dumps({**base, "d": ident, "set": props, "ft": dict.fromkeys(props, t)}).decode()
            out.append(f"{line}\t{_copy_text(ident)}\t{n}\t{_copy_text(rec)}\n")
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
        line = item.line
        same = chunk.get(ident)
        if same is None:
            chunk[ident] = [line, 1, props]
        else:
            problems.append(duplicate(line, maker.id_name, ident, same[0]))
            same[0] = line
            same[1] += 1
            same[2].update(props)
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
