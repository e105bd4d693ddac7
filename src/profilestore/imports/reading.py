"""A CSV file as rows with their line numbers, streamed: never the whole file in memory.

The file is read as bytes, a line at a time (each line at most `max_line_bytes`), and decoded line by line,
so that one line that is not UTF-8, holds a NUL or is far too long costs only its own row: the line is noted
(`Lines.bad`) and the row that holds it becomes a `Problem` instead of a `Row`.  Python's csv module parses
the decoded lines (quoted delimiters and newlines, `\\r\\n`); a cell over its field limit (an unclosed quote
that swallows the rest of the file, say) is a `Problem` naming the lines it spans, and parsing goes on after
it.  Line numbers are the file's own (1 is the first line, the header if there is one), as an editor shows
them.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

GZIP_MAGIC = b"\x1f\x8b"
DELIMITERS = ",;\t|"
SNIFF_BYTES = 64_000


class FileError(Exception):
    """The file as a whole cannot be imported (empty, binary, no columns): nothing was read into the store."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class Row:
    line: int
    cells: list[str]


@dataclass(slots=True)
class Problem:
    """A row (or the lines of one) that is skipped: `kind` is the summary's reason, `message` says why."""

    line: int
    kind: str
    message: str
    column: str | None = None


@contextmanager
def local_file(path: str) -> Iterator[str]:
    """`path` itself, or for `-` a temporary copy of standard input (an import reads its file twice)."""
    if path != "-":
        if not os.path.isfile(path):
            raise FileError(f"{path}: no such file")
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="profilestore-import-", suffix=".csv") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.flush()
        yield spool.name


class Source:
    """The file's bytes, decompressed when they start with gzip's magic number (whatever the file's name)."""

    def __init__(self, path: str) -> None:
        self.raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.size = os.fstat(self.raw.fileno()).st_size
        self.stream: IO[bytes] | gzip.GzipFile = self.raw
        if self.raw.peek(2)[:2] == GZIP_MAGIC:
            self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")

    def position(self) -> int:
        """Bytes of the file read so far (compressed bytes for a gzip file): progress against `size`."""
        return self.raw.tell()

    def head(self, nbytes: int) -> bytes:
        try:
            return self.stream.read(nbytes)
        except (OSError, EOFError) as exc:  # a damaged gzip stream
            raise FileError(f"the file cannot be decompressed: {exc}") from None

    def close(self) -> None:
        self.stream.close()
        self.raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_head(head: bytes) -> None:
    """Refuses a file that is empty or not text at all, before any row is read."""
    if not head.strip(b"\r\n\t "):
        raise FileError("the file is empty")
    if b"\x00" in head[:8192] and head[:8192].count(b"\x00") > 8:
        raise FileError(
            "the file is not text (it holds NUL bytes: a binary file, or UTF-16 text; save it as UTF-8 CSV)"
        )


def sniff(head: bytes, encoding: str = "utf-8") -> tuple[str, bool]:
    """(delimiter, whether the first row looks like a header) from the file's first bytes."""
    text = head.removeprefix(codecs.BOM_UTF8).decode(encoding, "replace")
    if "\n" in text:
        text = text[: text.rindex("\n") + 1]  # whole lines only
    sniffer = csv.Sniffer()
    try:
        delimiter = sniffer.sniff(text, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    try:
        header = sniffer.has_header(text)
    except csv.Error:
        header = True
    return delimiter, header


class Lines:
    """Decoded lines of a binary stream, for csv.reader; notes the lines it could not pass on whole."""

    def __init__(self, stream: IO[bytes] | gzip.GzipFile, encoding: str, max_line_bytes: int) -> None:
        self.stream = stream
        self.encoding = encoding
        self.max_line_bytes = max_line_bytes
        self.number = 0
        self.bad: dict[int, tuple[str, str]] = {}  # line number -> (kind, message)

    def __iter__(self) -> Iterator[str]:
        readline = self.stream.readline
        limit = self.max_line_bytes
        encoding = self.encoding
        while True:
            try:
                raw = readline(limit + 1)
            except (OSError, EOFError) as exc:  # a gzip stream damaged or cut short
                self.number += 1
                self.bad[self.number] = ("file", f"the rest of the file cannot be read: {exc}")
                return
            if not raw:
                return
            self.number += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                self._skip_rest_of_line()
                self.bad[self.number] = ("too_large", f"the line is longer than {limit} bytes")
                yield "\n"
                continue
            if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                self.bad[self.number] = (
                    "encoding",
                    f"the line is not valid {encoding} (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}"
                    " of the line); save the file as UTF-8",
                )
                text = raw.decode(encoding, "replace")
            if "\x00" in text:
                self.bad[self.number] = ("nul", "the line holds a NUL character, which cannot be stored")
                text = text.replace("\x00", "")
            yield text

    def _skip_rest_of_line(self) -> None:
        while True:
            more = self.stream.readline(1 << 20)
            if not more or more.endswith(b"\n"):
                return

    def problem(self, first: int, last: int) -> tuple[str, str] | None:
        """The first problem noted on lines first..last, forgetting those lines' notes."""
        found = None
        for number in range(first, last + 1):
            note = self.bad.pop(number, None)
            if note is not None and found is None:
                found = note
        return found


def rows(lines: Lines, delimiter: str) -> Iterator[Row | Problem]:
    """Every row of the file, or the Problem that stands in its place; blank lines are not rows."""
    reader = csv.reader(lines, delimiter=delimiter, strict=False)
    last = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first, last = last + 1, reader.line_num
            lines.problem(first, last)
            where = f"lines {first}-{last}" if last > first else f"line {first}"
            yield Problem(first, "malformed", f"{where}: {exc} (an unclosed quote?); skipped")
            continue
        first, last = last + 1, reader.line_num
        if lines.bad:
            note = lines.problem(first, last)
            if note is not None:
                yield Problem(first, note[0], note[1])
                continue
        if not cells:
            continue
        yield Row(first, cells)


def set_field_limit(max_line_bytes: int) -> None:
    """csv's per-field limit (one for the whole process): a field can be no longer than a line may be."""
    csv.field_size_limit(max(max_line_bytes, csv.field_size_limit()))


def text_stream(data: bytes) -> IO[bytes]:
    """Bytes as a stream (for previews of an upload's head)."""
    return io.BytesIO(data)
