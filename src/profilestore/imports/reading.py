"""A CSV file as rows with their line numbers, streamed: never the whole file in memory.

The file is read as bytes, a line at a time (each line at most `max_line_bytes`), and decoded line by line,
so that one line that is not UTF-8, holds a NUL or is far too long costs only its own row: the line is noted
(`Lines.bad`) and the row that holds it becomes a `Problem` instead of a `Row`.  Python's csv module parses
the decoded lines (quoted delimiters and newlines, `\\r\\n`); a cell over its field limit (an unclosed quote
that swallows the rest of the file, say) is a `Problem` naming the lines it spans, and parsing goes on after
it; so is a quote still open at the end of the file, and a file that cannot be read to its end.  Line
numbers are the file's own (1 is the first line, the header if there is one), as an editor shows them.
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
# What Lines hands the csv reader after the last line: no file's text holds it (NULs are taken out of every
# line), so a row that ends with it was still inside a quoted cell when the file ended.
END = "\x00end of file\x00"
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


# Bytes no text file holds (C0 controls but tab, line breaks, form feed, vertical tab and escape): more than a
# few of them in the first 8 KiB, and the file is not text (a PDF, an image, a spreadsheet saved as .xlsx).
_CONTROLS = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])


def check_head(head: bytes) -> None:
    """Refuses a file that is empty or not text at all, before any row is read."""
    if not head.strip(b"\r\n\t "):
        raise FileError("the file is empty")
    start = head[:8192]
    if start.count(b"\x00") > 8:
        raise FileError(
            "the file is not text (it holds NUL bytes: a binary file, or UTF-16 text; save it as UTF-8 CSV)"
        )
    if len(start) - len(start.translate(None, _CONTROLS)) > 8:
        raise FileError("the file is not text (it holds control characters: a binary file; save it as CSV)")
    if b"\n" not in head and b"\r" in head.rstrip(b"\r"):
        raise FileError(
            "the file's lines end with a carriage return alone (old Mac OS text): save it with Windows or"
            " Unix line ends"
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
        self.failure: tuple[int, str] | None = None  # (line, message): the stream broke off there

    def __iter__(self) -> Iterator[str]:
        readline = self.stream.readline
        limit = self.max_line_bytes
        encoding = self.encoding
        while True:
            try:
                raw = readline(limit + 1)
            except (OSError, EOFError) as exc:  # a gzip stream damaged or cut short
                self.number += 1
                self.failure = (
                    self.number,
                    f"line {self.number}: the rest of the file cannot be read ({exc})",
                )
                yield END
                return
            if not raw:
                yield END
                return
            self.number += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                self._skip_rest_of_line()
                self.bad[self.number] = (
                    "too_large",
                    f"line {self.number}: the line is longer than {limit} bytes; skipped",
                )
                yield "\n"
                continue
            if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                self.bad[self.number] = (
                    "encoding",
                    f"line {self.number}: not valid {encoding} (byte 0x{raw[exc.start]:02x} at byte"
                    f" {exc.start + 1} of the line); skipped (save the file as UTF-8, or give its encoding)",
                )
                text = raw.decode(encoding, "replace")
            if "\x00" in text:
                self.bad[self.number] = (
                    "nul",
                    f"line {self.number}: a NUL character, which cannot be stored; skipped",
                )
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
    """Every row of the file, or the Problem that stands in its place; blank lines are not rows.  A quote
    still open at the end of the file, and a file that cannot be read to its end, are Problems too."""
    reader = csv.reader(lines, delimiter=delimiter, strict=False)
    last = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            first, last = last + 1, min(reader.line_num, lines.number)
            lines.problem(first, last)
            where = f"lines {first}-{last}" if last > first else f"line {first}"
            yield Problem(first, "malformed", f"{where}: {exc} (an unclosed quote?); skipped")
            continue
        first, last = last + 1, reader.line_num
        if cells and cells[-1].endswith(END):
            if cells == [END]:  # the end of the file, after a whole row
                break
            last = lines.number  # END itself is no line of the file
            lines.problem(first, last)
            where = f"lines {first}-{last}" if last > first else f"line {first}"
            yield Problem(
                first, "malformed", f"{where}: a quote is still open at the end of the file; skipped"
            )
            break
        if lines.bad:
            note = lines.problem(first, last)
            if note is not None:
                yield Problem(first, note[0], note[1])
                continue
        if not cells:
            continue
        yield Row(first, cells)
    for number in sorted(lines.bad):  # noted on lines no row came of
        kind, message = lines.bad.pop(number)
        yield Problem(number, kind, message)
    if lines.failure is not None:
        yield Problem(lines.failure[0], "file", lines.failure[1])


def set_field_limit(max_line_bytes: int) -> None:
    """csv's per-field limit (one for the whole process): a field can be no longer than a line may be."""
    csv.field_size_limit(max(max_line_bytes, csv.field_size_limit()))


def text_stream(data: bytes) -> IO[bytes]:
    """Bytes as a stream (for previews of an upload's head)."""
    return io.BytesIO(data)
