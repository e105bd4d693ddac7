"""Events (/track, /import) for the ingestion pipeline (ingest/pipeline.py), which runs them.

`Events` is the ingestion pipeline's `Kind` for events: the rules of records.py, duplicates within the
request dropped (records.dedupe), and the one statement of sql.py.  /track's events name their project by
`properties.token`; /import's project comes from its credentials (routes.py).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from pydantic_core import ErrorDetails

from profilestore.ingest import pipeline
from profilestore.ingest.events import records
from profilestore.ingest.events.records import Event
from profilestore.ingest.events.sql import EventBatch, build_event_batch, insert_events, insert_one_by_one
from profilestore.ingest.responses import RecordError
from profilestore.settings import Settings


class Events(pipeline.Kind[Event, EventBatch]):
    noun = "event"
    token_field = "properties.token"
    adapter = records.record_adapter

    def __init__(self, settings: Settings, *, importing: bool) -> None:
        super().__init__(settings)
        self.importing = importing
        self.id_field = "$insert_id" if importing else "$distinct_id"

    def error_id(self, record: Any) -> str | None:
        return records.error_id(record, self.id_field)

    def field_error(self, error: ErrorDetails) -> tuple[str, str]:
        return records.field_error(error)

    def normalise(self, index: int, record: Any, now: float, body_bytes: int) -> Event | RecordError:
        return records.normalise(
            index, record, now=now, importing=self.importing, id_field=self.id_field, settings=self.settings
        )

    def token(self, item: Event) -> str | None:
        return item.token

    def item_id(self, item: Event) -> str | None:
        return item.insert_id if self.importing else item.distinct_id

    def prepare(self, pairs: list[tuple[int, Event]]) -> list[tuple[int, Event]]:
        return records.dedupe(pairs)

    def build(self, pairs: list[tuple[int, Event]]) -> EventBatch:
        return build_event_batch(pairs)

    async def apply(self, conn: AsyncConnection[Any], batch: EventBatch, now: float) -> None:
        await insert_events(conn, batch)

    async def apply_one_by_one(
        self, conn: AsyncConnection[Any], batch: EventBatch, now: float
    ) -> list[tuple[int, str | None, str]]:
        refused = await insert_one_by_one(conn, batch)
        by_index = {row_index: row for row_index, row in zip(batch.indexes, batch.rows, strict=True)}
        return [
            (index, by_index[index]["i"] if self.importing else by_index[index]["d"], reason)
            for index, reason in refused.items()
        ]
