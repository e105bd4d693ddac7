"""How `profilestore import-csv` shows an import: a progress bar on a terminal (rows/s, ETA), a plain line
every few seconds otherwise, and the summary at the end."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from profilestore.imports import run

PLAIN_EVERY_SECONDS = 5.0
SHOWN_WARNINGS = 20


class Display:
    """Progress of one import on stderr; use as a context manager around the import."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.started = time.monotonic()
        self.last_plain = 0.0
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if self.live:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rows]:>12,} rows"),
                TextColumn("{task.fields[rate]:>9,} rows/s"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> Display:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, p: run.Progress) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = int(p.rows_done / elapsed)
        description = "reading types" if p.phase == "scanning" else "importing"
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task(description, total=p.bytes_total or None, rows=0, rate=0)
            self.bar.update(
                self.task, description=description, completed=p.bytes_done, rows=p.rows_done, rate=rate
            )
            return
        now = time.monotonic()
        if now - self.last_plain >= PLAIN_EVERY_SECONDS:
            self.last_plain = now
            share = f"{100 * p.bytes_done / p.bytes_total:.0f}%" if p.bytes_total else "?"
            total = f" of {p.rows_total:,}" if p.rows_total else ""
            self.console.print(f"{description}: {p.rows_done:,}{total} rows, {share}, {rate:,} rows/s")


def print_summary(
    console: Console, job_id: int, summary: dict[str, Any], warnings: list[dict[str, Any]]
) -> None:
    verb = "read (a dry run: nothing written)" if summary["dry_run"] else "read"
    console.print(
        f"import {job_id}: {verb} {summary['rows']:,} rows in {summary['seconds']:.1f} s "
        f"({summary['profile_type']} profiles, mode {summary['mode']}, identifier: {summary['identifier']})"
    )
    table = Table("outcome", "rows", show_edge=False)
    for key in ("created", "updated", "unchanged", "skipped"):
        table.add_row(key, f"{summary[key]:,}")
    for reason, n in summary["skipped_by_reason"].items():
        table.add_row(f"  skipped: {reason}", f"{n:,}")
    console.print(table)
    if summary["warnings_by_kind"]:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in summary["warnings_by_kind"].items())
        console.print(f"warnings: {kinds}")
    for w in warnings[:SHOWN_WARNINGS]:
        console.print(f"  {w['message']}", markup=False, highlight=False)
    total = sum(summary["warnings_by_kind"].values())
    if total > SHOWN_WARNINGS:
        console.print(f"  ... {total - SHOWN_WARNINGS:,} more: --warnings FILE writes them all as CSV")
    for note in summary["notes"]:
        console.print(f"note: {note}", markup=False)
    if summary.get("cohort_id") is not None:
        console.print(f"static cohort {summary['cohort_id']} holds the imported profiles")
