"""The final table of the read benches: one Row per measurement, printed as markdown."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Row:
    """One line of the final table."""

    name: str
    service: str
    service_max: str
    raw: str
    ratio: float
    target: str
    ok: bool | None
    note: str = ""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISSED")


def markdown(rows: list[Row]) -> Iterator[str]:
    head = [
        "measurement",
        "service (median)",
        "service (max)",
        "raw Postgres (median)",
        "service/raw",
        "target",
    ]
    yield "| " + " | ".join(head) + " | |"
    yield "| --- | ---: | ---: | ---: | ---: | --- | --- |"
    for r in rows:
        name = r.name.replace("|", "\\|") + (f" ({r.note})" if r.note else "")
        cells = [name, r.service, r.service_max, r.raw, f"{r.ratio:.2f}", r.target, verdict(r.ok)]
        yield "| " + " | ".join(cells) + " |"
