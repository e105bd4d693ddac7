"""Prometheus metrics (`GET /metrics`, text format), with `prometheus-client`.

    profilestore_http_requests_total{route,status}          every answer, by route template and status
    profilestore_http_request_duration_seconds{route}       histogram, from the request to the last byte
    profilestore_records_total{endpoint,outcome}            ingested records: accepted, or why rejected
    profilestore_ingestion_warnings_total{kind}             warnings the validation recorded (profile, group)
    profilestore_batch_records{endpoint}                    histogram of records per ingestion request
    profilestore_db_pool_connections{pool,state}            connections of the pools: idle, busy, waiting
    profilestore_idempotent_replays_total{endpoint}         answers replayed for an Idempotency-Key

With several app processes (`--workers N`) the values are kept in files under PROMETHEUS_MULTIPROC_DIR,
which `profilestore serve` creates (empty) before it starts them, and `/metrics` adds them up across the
processes (prometheus-client's multiprocess mode); with one process they live in its memory.  Labels take
bounded values only (route templates, not paths; a reason class, not a message).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

HTTP_REQUESTS = Counter(
    "profilestore_http_requests_total", "HTTP requests answered, by route and status.", ["route", "status"]
)
HTTP_DURATION = Histogram(
    "profilestore_http_request_duration_seconds",
    "Time from a request's start to the last byte of its answer, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RECORDS = Counter(
    "profilestore_records_total",
    "Ingested records: accepted, or rejected by reason (invalid, unknown_token, over_limit, refused).",
    ["endpoint", "outcome"],
)
WARNINGS = Counter(
    "profilestore_ingestion_warnings_total", "Ingestion warnings recorded by validation.", ["kind"]
)
BATCH_RECORDS = Histogram(
    "profilestore_batch_records",
    "Records per ingestion request.",
    ["endpoint"],
    buckets=(1, 2, 5, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000),
)
POOL_CONNECTIONS = Gauge(
    "profilestore_db_pool_connections",
    "Database connections of the service's pools, by state (idle, busy, waiting: requests queued for one).",
    ["pool", "state"],
    multiprocess_mode="livesum",
)
REPLAYS = Counter(
    "profilestore_idempotent_replays_total", "Answers replayed for a repeated Idempotency-Key.", ["endpoint"]
)


INGESTION_ENDPOINTS = ("/engage", "/groups", "/track", "/import")


def initialise() -> None:
    """The ingestion series at zero from the start, so a dashboard sees them before the first request."""
    for endpoint in INGESTION_ENDPOINTS:
        RECORDS.labels(endpoint, "accepted")
        BATCH_RECORDS.labels(endpoint)
        REPLAYS.labels(endpoint)
    for kind in ("profile", "group"):
        WARNINGS.labels(kind)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric (of every app process in multiprocess mode), and its media type."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def rejection(message: str) -> str:
    """The reason class of a rejected record's message (a bounded label value)."""
    if message == "unknown project token":
        return "rejected_unknown_token"
    if message.startswith("refused by the database"):
        return "rejected_refused"
    if message.startswith("a request holds at most"):
        return "rejected_over_limit"
    return "rejected_invalid"


def record_pool(name: str, stats: dict[str, Any]) -> None:
    """psycopg_pool's `get_stats()` of one pool -> its gauge values."""
    size = int(stats.get("pool_size", 0))
    idle = int(stats.get("pool_available", 0))
    POOL_CONNECTIONS.labels(name, "idle").set(idle)
    POOL_CONNECTIONS.labels(name, "busy").set(max(size - idle, 0))
    POOL_CONNECTIONS.labels(name, "waiting").set(int(stats.get("requests_waiting", 0)))


def record_pools(state: Any) -> None:
    """The app's pools (its `state`: ingest, api, and read when READ_DATABASE_URL is set) as gauge values."""
    record_pool("ingest", state.pool.get_stats())
    record_pool("api", state.api_pool.get_stats())
    if state.read_pool is not state.api_pool:
        record_pool("read", state.read_pool.get_stats())


def mark_dead(pid: int) -> None:
    """A worker process is gone: its live gauges stop counting (multiprocess mode)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
