"""Charts as SVG, drawn by the server: bars of a daily series, with labelled axes and a title for each bar.

No style attributes (the page's Content-Security-Policy allows only its stylesheet): classes, and SVG's own
presentation attributes.
"""

from __future__ import annotations

import datetime as dt
import math

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 180
LEFT, BOTTOM, TOP, RIGHT = 40, 24, 10, 8


def _ticks(top: int) -> list[int]:
    """Up to 4 round values from 0 to at least `top`."""
    if top <= 0:
        return [0, 1]
    step = 10 ** math.floor(math.log10(top))
    for factor in (1, 2, 5, 10):
        if top / (step * factor) <= 4:
            step *= factor
            break
    return list(range(0, top + step, step))


def daily_bars(series: list[tuple[dt.date, int]], label: str) -> Markup:
    """`series` of (day, count) as a bar chart, days on the x axis (a label each month), counts on the y."""
    if not series:
        return Markup("")
    ticks = _ticks(max(n for _, n in series))
    top = ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / len(series)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    for t in ticks:
        y = TOP + plot_h - plot_h * t / top
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{t}</text>')
    for i, (day, n) in enumerate(series):
        h = plot_h * n / top
        x = LEFT + i * step
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{h:.1f}"><title>{day.isoformat()}: {n} event{"s" if n != 1 else ""}</title></rect>'
        )
        if day.day == 1 or i == 0:
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}">{day.strftime("%b %-d")}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
