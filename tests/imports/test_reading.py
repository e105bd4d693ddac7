"""reading.py: a CSV file's bytes to rows with the file's own line numbers, and the Problem that stands in
for each row that cannot be read (encoding, NUL, too long a line, an open quote, a file cut short)."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from profilestore.imports.reading import (
    FileError,
    Lines,
    Problem,
    Row,
    Source,
    check_head,
    local_file,
    rows,
    sniff,
)


def parse(data: bytes, delimiter: str = ",", encoding: str = "utf-8", limit: int = 10_000) -> list[Any]:
    """Rows as (line, cells), Problems as (line, kind, message)."""
    out: list[Any] = []
    for item in rows(Lines(io.BytesIO(data), encoding, limit), delimiter):
        if isinstance(item, Row):
            out.append((item.line, item.cells))
        else:
            assert isinstance(item, Problem)
            out.append((item.line, item.kind, item.message))
    return out


@pytest.fixture
def field_limit() -> Iterator[None]:
    """csv's field limit is the process's: put it back after a test that lowers it."""
    before = csv.field_size_limit()
    yield
    csv.field_size_limit(before)


def test_plain_rows_keep_the_files_line_numbers() -> None:
    assert parse(b"distinct_id,name\nu1,Ann\n\nu2,Bob\n") == [
        (1, ["distinct_id", "name"]),
        (2, ["u1", "Ann"]),
        (4, ["u2", "Bob"]),  # the blank line 3 is no row, and costs no number
    ]


def test_bom_crlf_and_a_last_line_without_newline() -> None:
    assert parse(b"\xef\xbb\xbfdistinct_id,n\r\nu1,1\r\nu2,2") == [
        (1, ["distinct_id", "n"]),  # no BOM in the first header
        (2, ["u1", "1"]),
        (3, ["u2", "2"]),
    ]


def test_quoted_delimiters_newlines_and_quotes() -> None:
    data = b'id,note\nu1,"a, b"\nu2,"two\nlines, and ""quotes"""\r\nu3,"crlf\r\ninside"\nu4,x\n'
    assert parse(data) == [
        (1, ["id", "note"]),
        (2, ["u1", "a, b"]),
        (3, ["u2", 'two\nlines, and "quotes"']),
        (5, ["u3", "crlf\r\ninside"]),
        (7, ["u4", "x"]),  # numbers count the lines a quoted cell spans
    ]


def test_ragged_rows_are_rows_here() -> None:
    """Whether a row has the header's width is the plan's business (RowMaker), not the reader's."""
    assert parse(b"a,b\n1\n1,2,3\n") == [(1, ["a", "b"]), (2, ["1"]), (3, ["1", "2", "3"])]


def test_a_line_that_is_not_utf8_costs_only_its_row() -> None:
    assert parse(b"id,city\nu1,M\xfcnchen\nu2,Z\xc3\xbcrich\n") == [
        (1, ["id", "city"]),
        (
            2,
            "encoding",
            "line 2: not valid utf-8 (byte 0xfc at byte 5 of the line); skipped (save the file as UTF-8, or"
            " give its encoding)",
        ),
        (3, ["u2", "Zürich"]),
    ]


def test_latin1_when_told() -> None:
    assert parse(b"id,city\nu1,M\xfcnchen\n", encoding="latin-1") == [
        (1, ["id", "city"]),
        (2, ["u1", "München"]),
    ]


def test_a_nul_in_a_line_skips_its_row_only() -> None:
    assert parse(b'id,n\nu1,"a\x00b"\nu2,c\n') == [
        (1, ["id", "n"]),
        (2, "nul", "line 2: a NUL character, which cannot be stored; skipped"),
        (3, ["u2", "c"]),
    ]


def test_a_bad_line_inside_a_quoted_cell_skips_the_whole_row() -> None:
    assert parse(b'id,n\nu1,"first\nsecond \xff\nthird"\nu2,ok\n') == [
        (1, ["id", "n"]),
        (
            2,
            "encoding",
            "line 3: not valid utf-8 (byte 0xff at byte 8 of the line); skipped (save the file as UTF-8, or"
            " give its encoding)",
        ),
        (5, ["u2", "ok"]),
    ]


def test_a_line_over_the_limit() -> None:
    data = b"id,n\nu1," + b"x" * 500 + b"\nu2,ok\n"
    assert parse(data, limit=100) == [
        (1, ["id", "n"]),
        (2, "too_large", "line 2: the line is longer than 100 bytes; skipped"),
        (3, ["u2", "ok"]),
    ]
    # At the limit exactly (its newline aside), a line is read.
    assert parse(b"id,n\nu1," + b"x" * 97 + b"\n", limit=100)[1] == (2, ["u1", "x" * 97])


def test_a_quote_open_at_the_end_of_the_file() -> None:
    """The open quote swallows the lines after it; the reader says so instead of importing them as text."""
    assert parse(b'id,n\nu1,ok\nu2,"open\nu3,b\nu4,c\n') == [
        (1, ["id", "n"]),
        (2, ["u1", "ok"]),
        (3, "malformed", "lines 3-5: a quote is still open at the end of the file; skipped"),
    ]
    assert parse(b'id,n\nu1,"open') == [
        (1, ["id", "n"]),
        (2, "malformed", "line 2: a quote is still open at the end of the file; skipped"),
    ]


def test_a_quote_open_past_the_field_limit(field_limit: None) -> None:
    """A cell longer than csv's field limit is one Problem naming its lines; reading goes on after it."""
    csv.field_size_limit(1000)
    lines = [b"id,n", b'u1,"open'] + [b"u%d,%s" % (i, b"w" * 99) for i in range(2, 40)] + [b"u40,end"]
    found = parse(b"\n".join(lines) + b"\n")
    assert found[:2] == [
        (1, ["id", "n"]),
        (2, "malformed", "lines 2-12: field larger than field limit (1000) (an unclosed quote?); skipped"),
    ]
    assert found[2] == (13, ["u12", "w" * 99])  # the line the limit was passed on went with the cell
    assert found[-1] == (41, ["u40", "end"])
    assert len(found) == 2 + 29


def test_a_stray_quote_inside_a_cell_is_text() -> None:
    assert parse(b'id,h\nu1,5\'10"\nu2,"a"b\n') == [
        (1, ["id", "h"]),
        (2, ["u1", "5'10\""]),
        (3, ["u2", "ab"]),
    ]


def test_a_gzip_stream_cut_short(tmp_path: Path) -> None:
    body = b"id,n\n" + b"".join(b"u%d,%d\n" % (i, i) for i in range(60_000))
    packed = gzip.compress(body)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with Source(str(path)) as source:
        found = list(rows(Lines(source.stream, "utf-8", 10_000), ","))
    read = [r for r in found if isinstance(r, Row)]
    problems = [p for p in found if isinstance(p, Problem)]
    assert 1000 < len(read) < 60_000
    assert read[-1].cells == [f"u{len(read) - 2}", str(len(read) - 2)]  # no half row
    assert [(p.line, p.kind) for p in problems] == [(len(read) + 1, "file")]
    assert problems[0].message.startswith(f"line {len(read) + 1}: the rest of the file cannot be read (")


@pytest.mark.parametrize("name", ["people.csv.gz", "people.csv", "people"])
def test_gzip_is_read_whatever_the_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"id,n\nu1,1\n"))
    with Source(str(path)) as source:
        assert list(rows(Lines(source.stream, "utf-8", 100), ",")) == [
            Row(1, ["id", "n"]),
            Row(2, ["u1", "1"]),
        ]


def test_a_damaged_gzip_head_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    with Source(str(path)) as source, pytest.raises(FileError, match="the file cannot be decompressed"):
        source.head(1000)


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"", "the file is empty"),
        (b"\r\n \n\t\n", "the file is empty"),
        (bytes(range(256)) * 10, "the file is not text (it holds NUL bytes"),
        ("distinct_id,name\nu1,Ann\n".encode("utf-16"), "the file is not text (it holds NUL bytes"),
        (b"%PDF-1.7\n" + bytes(range(1, 32)) * 3, "the file is not text (it holds control characters"),
        (b"distinct_id,n\ru1,1\ru2,2\r", "the file's lines end with a carriage return alone"),
    ],
)
def test_files_refused_whole(head: bytes, message: str) -> None:
    with pytest.raises(FileError) as caught:
        check_head(head)
    assert caught.value.message.startswith(message)


def test_text_with_a_few_odd_bytes_is_text() -> None:
    check_head(b"id,n\nu1,a\x00b\nu2,c\n")
    check_head(b"id,n\nu1,\x1b[1mbold\x1b[0m\nu2,soft\x0bbreak\x0cfeed\x1a")
    check_head("id,city\nu1,München\nu2,Zürich\n".encode("latin-1") * 100)
    check_head(b"distinct_id,n\r")  # one line: nothing to tell


@pytest.mark.parametrize(
    ("head", "delimiter"),
    [
        (b"distinct_id,name\nu1,Ann\nu2,Bob\n", ","),
        (b"distinct_id;name;score\nu1;Ann;1,5\nu2;Bob;2\n", ";"),
        (b"distinct_id\tname\nu1\tAnn Lee\nu2\tBob\n", "\t"),
        (b"distinct_id|name\nu1|Ann\nu2|Bob\n", "|"),
        (b"distinct_id,name\nu1,Smith; John\nu2,Doe; Jane\n", ","),
        (b'distinct_id,tags\nu1,"a;b;c"\nu2,"d;e"\n', ","),
        (b"distinct_id\nu1\nu2\n", ","),  # one column: the default
        (b"\xef\xbb\xbfdistinct_id;n\r\nu1;1\r\n", ";"),
    ],
)
def test_sniffed_delimiter(head: bytes, delimiter: str) -> None:
    assert sniff(head)[0] == delimiter


def test_sniff_reads_whole_lines_only() -> None:
    """The head ends mid-line (a long cell): only the lines before it are looked at."""
    head = b"distinct_id;note\nu1;short\nu2;" + b"a,b," * 1000
    assert sniff(head)[0] == ";"


def test_local_file(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id\n")
    with local_file(str(path)) as found:
        assert found == str(path)
    with pytest.raises(FileError, match="no such file"), local_file(str(tmp_path / "missing.csv")):
        pass
