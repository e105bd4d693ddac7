"""A line chart as SVG, drawn by the server: one line per series over time buckets (days, weeks or months),
with labelled axes (dates, the unit counted), a legend, and a <title> on every point.

No style attributes (the page's Content-Security-Policy allows only its stylesheet): classes, and SVG's own
presentation attributes (each series' colour is a `stroke`/`fill`, from a palette readable on light and dark).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 960
PLOT_HEIGHT = 260
LEFT, RIGHT, TOP = 72, 16, 12
X_AXIS = 44  # below the plot: date labels and the axis title
LEGEND_ROW, LEGEND_COLUMN = 20, 230
LEGEND_CHARS = 30
MAX_X_LABELS = 8
PALETTE = (
    "#4263eb",
    "#f76707",
    "#2f9e44",
    "#e03131",
    "#9c36b5",
    "#1098ad",
    "#e8a200",
    "#868e96",
    "#5c940d",
    "#d6336c",
)
X_TITLES = {"day": "Day (UTC)", "week": "Week, from Monday (UTC)", "month": "Month (UTC)"}


def colour(index: int) -> str:
    """The colour of the `index`-th series (the table's swatches use it too)."""
    return PALETTE[index % len(PALETTE)]


def ticks(top: int) -> list[int]:
    """Round values from 0 to at least `top`, at most 6 of them."""
    if top <= 0:
        return [0, 1]
    step = 10 ** max(0, math.floor(math.log10(top)) - 1)
    while True:
        for factor in (1, 2, 5):
            if math.ceil(top / (step * factor)) <= 5:
                size = step * factor
                return list(range(0, size * math.ceil(top / size) + 1, size))
        step *= 10


def bucket_label(day: dt.date, unit: str, *, year: bool = True) -> str:
    """How a bucket is named: `Mar 3, 2025` (a day, or the week from that Monday), `Mar 2025` (a month)."""
    if unit == "month":
        return day.strftime("%b %Y")
    return day.strftime("%b %-d, %Y" if year else "%b %-d")


def _x_labels(buckets: Sequence[dt.date], unit: str) -> list[tuple[int, str]]:
    """At most MAX_X_LABELS evenly spaced buckets, the year shown on the first and where it changes."""
    step = max(1, math.ceil(len(buckets) / MAX_X_LABELS))
    chosen = list(range(0, len(buckets), step))
    out: list[tuple[int, str]] = []
    year = None
    for i in chosen:
        day = buckets[i]
        out.append((i, bucket_label(day, unit, year=day.year != year)))
        year = day.year
    return out


def _short(text: str) -> str:
    return text if len(text) <= LEGEND_CHARS else text[: LEGEND_CHARS - 1] + "…"


def line_chart(
    buckets: Sequence[dt.date],
    lines: Sequence[tuple[str, Sequence[int]]],
    *,
    unit: str,
    y_title: str,
    nouns: tuple[str, str],
    label: str,
) -> Markup:
    """`lines` of (name, one value per bucket) over `buckets` (the first day of each; `unit` day, week or
    month).  `y_title` names the y axis ("Events"); `nouns` are what one and several of a value are ("event",
    "events"), for the points' titles; `label` is the chart's accessible name."""
    if not buckets or not lines:
        return Markup("")
    columns = max(1, (WIDTH - LEFT - RIGHT) // LEGEND_COLUMN)
    legend_rows = math.ceil(len(lines) / columns)
    height = TOP + PLOT_HEIGHT + X_AXIS + legend_rows * LEGEND_ROW + 8
    plot_w = WIDTH - LEFT - RIGHT
    marks = ticks(max(max(values, default=0) for _, values in lines))
    top = marks[-1]

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if len(buckets) == 1 else plot_w * i / (len(buckets) - 1))

    def y(value: int) -> float:
        return TOP + PLOT_HEIGHT - PLOT_HEIGHT * value / top

    parts = [
        f'<svg class="chart linechart" viewBox="0 0 {WIDTH} {height}" role="img"'
        f' aria-label="{escape(label)}" font-size="12">',
        f"<title>{escape(label)}</title>",
        '<g class="y-axis">',
    ]
    for t in marks:
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:,}</text>')
    middle = TOP + PLOT_HEIGHT / 2
    parts.append(
        f'<text class="axis-title" x="14" y="{middle:.1f}" text-anchor="middle"'
        f' transform="rotate(-90 14 {middle:.1f})">{escape(y_title)}</text></g><g class="x-axis">'
    )
    base = TOP + PLOT_HEIGHT
    parts.append(f'<line class="axis-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>')
    for i, text in _x_labels(buckets, unit):
        anchor = "start" if len(buckets) > 1 and i == 0 else "middle"
        parts.append(f'<line class="tick" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{base}" y2="{base + 4}"/>')
        parts.append(
            f'<text class="axis" x="{x(i):.1f}" y="{base + 17}" text-anchor="{anchor}">{escape(text)}</text>'
        )
    parts.append(
        f'<text class="axis-title" x="{LEFT + plot_w / 2:.1f}" y="{base + 36}" text-anchor="middle">'
        f"{escape(X_TITLES.get(unit, unit))}</text></g>"
    )
    one, many = nouns
    for index, (name, values) in enumerate(lines):
        stroke = colour(index)
        points = " ".join(f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<g class="series" data-series="{index}">')
        parts.append(
            f'<path class="line" d="{points}" fill="none" stroke="{stroke}" stroke-width="2"'
            f' stroke-linejoin="round"><title>{escape(name)}</title></path>'
        )
        for i, v in enumerate(values):
            when = bucket_label(buckets[i], unit)
            what = f"{name} · {'week of ' if unit == 'week' else ''}{when}: {v:,} {one if v == 1 else many}"
            parts.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{stroke}">'
                f"<title>{escape(what)}</title></circle>"
            )
        parts.append("</g>")
    parts.append('<g class="legend">')
    legend_top = base + X_AXIS + 4
    for index, (name, _) in enumerate(lines):
        row, column = divmod(index, columns)
        lx, ly = LEFT + column * LEGEND_COLUMN, legend_top + row * LEGEND_ROW
        parts.append(
            f"<g><title>{escape(name)}</title>"
            f'<line x1="{lx}" x2="{lx + 18}" y1="{ly + 8}" y2="{ly + 8}" stroke="{colour(index)}"'
            f' stroke-width="3"/><text class="legend-text" x="{lx + 24}" y="{ly + 12}">{escape(_short(name))}'
            "</text></g>"
        )
    parts.append("</g></svg>")
    return Markup("".join(parts))
