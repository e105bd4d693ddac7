"""Figures of a measured phase: request latencies and throughput (PhaseResult), timings of repeated calls
(Timing, timed)."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass
class PhaseResult:
    name: str
    seconds: float
    batch: int
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "updates": self.requests * self.batch,
            "requests_per_s": round(self.requests / self.seconds, 2),
            "updates_per_s": round(self.requests * self.batch / self.seconds, 1),
            "p50_ms": round(pct(lat, 50) * 1000, 2),
            "p99_ms": round(pct(lat, 99) * 1000, 2),
            "max_ms": round(lat[-1] * 1000, 2) if lat else None,
            "errors": dict(self.errors),
            **self.extra,
            "cpu": self.cpu,
        }

    def line(self) -> str:
        f = self.figures()
        errors = f" errors={f['errors']}" if f["errors"] else ""
        return (
            f"{self.name:<11} {f['updates_per_s']:>9.0f} updates/s {f['requests_per_s']:>7.1f} req/s"
            f"  p50 {f['p50_ms']:7.1f} ms  p99 {f['p99_ms']:7.1f} ms  ({f['requests']} requests in"
            f" {f['seconds']:.1f} s){errors}"
        )


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)  # seconds

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    def figures(self) -> dict[str, Any]:
        return {
            "median_ms": round(self.median * 1000, 2),
            "max_ms": round(self.max * 1000, 2),
            "runs_ms": [round(s * 1000, 2) for s in self.samples],
        }


def timed(runs: int, warmup: int, fn: Callable[[], Any], budget: float = 30.0) -> tuple[Timing, Any]:
    """`warmup` unmeasured calls, then `runs` measured ones; a measurement that has taken more than `budget`
    seconds stops after its next sample (a warm-up over budget counts as that sample), so a very slow query
    costs a couple of runs, not a quarter of an hour."""
    result = None
    timing = Timing()
    began = time.perf_counter()
    for i in range(warmup + runs):
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        if i >= warmup or seconds > budget:
            timing.samples.append(seconds)
        if time.perf_counter() - began > budget and timing.samples:
            break
    return timing, result
