"""Profile updates (/engage, /groups) for the ingestion pipeline (ingest/pipeline.py), which runs them.

`ProfileUpdates` is the ingestion pipeline's `Kind` for profile updates: the rules of records.py and the
one statement of sql.py.  Group profiles are the same rules under another key (`$group_id` with
`$group_key`), applied to `group_profiles`.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from pydantic_core import ErrorDetails

from profilestore.ingest import pipeline
from profilestore.ingest.pipeline import id_text
from profilestore.ingest.profiles import records
from profilestore.ingest.profiles.records import Update
from profilestore.ingest.profiles.sql import Batch, apply_batch, apply_one_by_one, build_batch
from profilestore.ingest.responses import RecordError
from profilestore.ops import metrics
from profilestore.settings import Settings


class ProfileUpdates(pipeline.Kind[Update, Batch]):
    noun = "record"
    token_field = "$token"
    adapter = records.record_adapter

    def __init__(self, settings: Settings, *, kind: str = "profile") -> None:
        super().__init__(settings)
        self.kind = kind  # "profile" (/engage) or "group" (/groups)
        self.id_field = "$group_id" if kind == "group" else "$distinct_id"

    def error_id(self, record: Any) -> str | None:
        if isinstance(record, dict) and record.get(self.id_field) is not None:
            return id_text(record[self.id_field])
        return None

    def field_error(self, error: ErrorDetails) -> tuple[str, str]:
        return records.field_error(error)

    def normalise(self, index: int, record: Any, now: float, body_bytes: int) -> Update | RecordError:
        check_size = body_bytes > self.settings.max_value_bytes
        return records.normalise(index, record, now, self.settings, check_size, self.id_field)

    def token(self, item: Update) -> str:
        return item.project_token

    def item_id(self, item: Update) -> str:
        return item.distinct_id

    def build(self, pairs: list[tuple[int, Update]]) -> Batch:
        batch = build_batch(pairs, self.kind)
        if batch.warnings:
            metrics.WARNINGS.labels(self.kind).inc(len(batch.warnings))
        return batch

    async def apply(self, conn: AsyncConnection[Any], batch: Batch, now: float) -> None:
        await apply_batch(conn, batch, now, self.settings)

    async def apply_one_by_one(
        self, conn: AsyncConnection[Any], batch: Batch, now: float
    ) -> list[tuple[int, str | None, str]]:
        refused = await apply_one_by_one(conn, batch, now, self.settings)
        groups = dict(batch.groups())
        return [
            (index, groups[key]["d"], reason)
            for key, reason in refused.items()
            for index in batch.indexes[key]
        ]
