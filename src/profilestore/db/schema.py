"""The tables, as SQLAlchemy Core metadata: Alembic's source of truth and the names other modules query.

`projects`, `profiles`, `events` (and later `group_profiles`, `cohorts`) are an interface: analysts query
them directly, so their names and documented columns are stable (README, docs/operations.md).  Columns marked
internal are bookkeeping for the update rules of docs/ingest.md section 3 and may change.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("token", Text, nullable=False, unique=True),
    # SHA-256 of the secret: secrets are 32 random bytes, so a fast hash is enough (no password stretching).
    Column("api_secret_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # After `rotate-secret --grace`: the previous secret's hash, valid until `previous_secret_until`.
    Column("previous_secret_hash", Text),
    Column("previous_secret_until", DateTime(timezone=True)),
)

# No foreign key to projects: every write checks the token in the app, and a per-row RI check would
# serialise concurrent writers on the project row (and Citus distributes this table).
profiles = Table(
    "profiles",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("distinct_id", Text, nullable=False),
    Column("properties", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen", DateTime(timezone=True)),
    # internal: per-property time of the last $set/$set_once/$unset ({k: T} or {k: [T, "o"|"u"]})
    Column("prop_times", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # internal: greatest T in prop_times and of a deletion (the fast path's test)
    Column("max_time", Double),
    # internal: newest $delete's T and when its tombstone expires (epoch seconds)
    Column("delete_time", Double),
    Column("delete_until", Double),
    PrimaryKeyConstraint("project_id", "distinct_id"),
)

# internal: deletions of profiles that no longer exist, so stale updates arriving later are dropped.
profile_tombstones = Table(
    "profile_tombstones",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("distinct_id", Text, nullable=False),
    Column("delete_time", Double, nullable=False),
    Column("delete_until", Double, nullable=False),
    PrimaryKeyConstraint("project_id", "distinct_id"),
)

ingestion_warnings = Table(
    "ingestion_warnings",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("project_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),  # "profile" or "group"
    Column("entity", Text, nullable=False),  # the distinct_id (or group key/id)
    Column("operation", Text, nullable=False),
    Column("property", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "project_id", "id"),
    Index(None, "created_at"),  # the retention sweep (app.py): old rows found without a scan
)


# Group profiles (/groups): a profile under another key, with the same bookkeeping columns.
group_profiles = Table(
    "group_profiles",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("group_id", Text, nullable=False),
    Column("properties", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen", DateTime(timezone=True)),
    Column("prop_times", JSONB, nullable=False, server_default=text("'{}'::jsonb")),  # internal
    Column("max_time", Double),  # internal
    Column("delete_time", Double),  # internal
    Column("delete_until", Double),  # internal
    PrimaryKeyConstraint("project_id", "group_key", "group_id"),
)

# internal: deletions of group profiles that no longer exist.
group_profile_tombstones = Table(
    "group_profile_tombstones",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("group_id", Text, nullable=False),
    Column("delete_time", Double, nullable=False),
    Column("delete_until", Double, nullable=False),
    PrimaryKeyConstraint("project_id", "group_key", "group_id"),
)

# Partitioned by month on `time` (partitions events_YYYY_MM and events_default are created by the migration
# and by profilestore_ensure_event_partitions, db/sql/0003_event_partitions.sql; they are not in this metadata
# and migrations/env.py keeps `alembic check` from reporting them).
# distinct_id is '' for events with no user.
# insert_id is NULL for /track events sent without $insert_id: NULLs are distinct in the unique index, so such
# events are never deduplicated.  The unique index holds the partition key `time`, as Postgres requires.
events = Table(
    "events",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("event", Text, nullable=False),
    Column("distinct_id", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("insert_id", Text),
    Column("properties", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_events_project_id_distinct_id_time", "project_id", "distinct_id", text("time DESC")),
    Index("ix_events_project_id_event_time", "project_id", "event", "time"),
    Index("uq_events_dedupe", "project_id", "event", "distinct_id", "time", "insert_id", unique=True),
    postgresql_partition_by="RANGE (time)",
)

# Everyone who has done an event, with the times of their first and last one ("All Users" without
# scanning events); upserted by every /track and /import request.
users_seen = Table(
    "users_seen",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("distinct_id", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("project_id", "distinct_id"),
)


# The narrow path of analytics (query/events/rollup.py): the events per (project, UTC day, event, user), keyed
# by integers from two per-project dictionaries (names and users; user 0 is the '' of events without one).
# Kept exact for every writer of `events`: its triggers append to `event_days_pending`, which a compaction
# folds into `event_days` (db/sql/0011_event_days.sql; the app runs it every second and before each read).
event_names = Table(
    "event_names",
    metadata,
    Column("id", Integer, Identity(always=False), primary_key=True),
    Column("project_id", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    UniqueConstraint("project_id", "name"),
)
event_users = Table(
    "event_users",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("project_id", BigInteger, nullable=False),
    Column("distinct_id", Text, nullable=False),
    UniqueConstraint("project_id", "distinct_id"),
)
event_days = Table(
    "event_days",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("day", Date, nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("events", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "day", "event_id", "user_id"),
)
event_days_pending = Table(  # append-only, drained by each compaction: no key, no index
    "event_days_pending",
    metadata,
    Column("project_id", BigInteger, nullable=False),
    Column("day", Date, nullable=False),
    Column("event", Text, nullable=False),
    Column("distinct_id", Text, nullable=False),
    Column("events", BigInteger, nullable=False),
)

# The index of the read API's `where` (expressions/): one GIN `jsonb_ops` on `properties` per profile table
# answers equality on any property (`properties @> {"name": value}`) and `defined()` (`properties ? name`).
# One index instead of two (migration 0010): every profile update re-indexes its row (no HOT update), so
# each index costs every write.  Its pending list is emptied in the background (app.py).
Index(
    "ix_profiles_properties",
    profiles.c.properties,
    postgresql_using="gin",
    postgresql_with={"gin_pending_list_limit": 16384},
)
# The Users page's default order, most recently seen first (web/): its first page is one index scan.
Index(
    "ix_profiles_last_seen",
    profiles.c.project_id,
    func.coalesce(profiles.c.last_seen, text("'-infinity'::timestamptz")),
    profiles.c.distinct_id,
)
Index(
    "ix_group_profiles_properties",
    group_profiles.c.properties,
    postgresql_using="gin",
    postgresql_with={"gin_pending_list_limit": 16384},
)

# internal: /api/2.0/engage pagination sessions (query/engage.py, query/sql.py).  A session pins the
# matching ids and their order at its first request, one row per page, so any page is one primary-key
# read, in any order.
# UNLOGGED: no WAL for throwaway data; a crash empties them, and a client then starts again (an expired
# session's answer).
query_sessions = Table(
    "query_sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project_id", BigInteger, nullable=False),
    Column("group_key", Text),  # data_group_id: a query of group profiles
    Column("page_size", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    # filter_by_cohort with include_all_users: pages also list ids without a profile (LEFT JOIN)
    Column("all_users", Boolean, nullable=False, server_default=text("false")),
    Column("touched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    prefixes=["UNLOGGED"],
)
query_session_pages = Table(
    "query_session_pages",
    metadata,
    Column("session_id", Text, nullable=False),
    Column("page", BigInteger, nullable=False),
    Column("ids", ARRAY(Text), nullable=False),
    PrimaryKeyConstraint("session_id", "page"),
    prefixes=["UNLOGGED"],
)


# Saved cohorts (cohorts/): a definition (docs/query.md, Cohorts) evaluated when used, or, for a static
# cohort,
# the list of its members in cohort_members.  No foreign key to projects, as for profiles; cohort_members
# references its cohort (both are small reference tables, also under Citus) and goes with it.
cohorts = Table(
    "cohorts",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("project_id", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("definition", JSONB),  # NULL for a static cohort
    Column("is_static", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "project_id", "id"),
)
cohort_members = Table(
    "cohort_members",
    metadata,
    Column("cohort_id", BigInteger, ForeignKey("cohorts.id", ondelete="CASCADE"), nullable=False),
    Column("distinct_id", Text, nullable=False),
    PrimaryKeyConstraint("cohort_id", "distinct_id"),
)


# CSV imports (imports/): a job per import, from the command line or the HTTP API, with its progress and
# summary; its row-level warnings (line numbers in the file) go with it.
import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("project_id", BigInteger, nullable=False),
    Column("state", Text, nullable=False),  # queued, running, done, failed, interrupted
    Column("source", Text, nullable=False),  # "cli" or "api"
    Column("options", JSONB, nullable=False),
    Column("upload_path", Text),  # an API upload, deleted when the job ends
    Column("rows_done", BigInteger, nullable=False, server_default=text("0")),
    Column("rows_total", BigInteger),
    Column("bytes_done", BigInteger, nullable=False, server_default=text("0")),
    Column("bytes_total", BigInteger),
    Column("summary", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "project_id", "id"),
)
import_warnings = Table(
    "import_warnings",
    metadata,
    Column("job_id", BigInteger, ForeignKey("import_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("line", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("column_name", Text),
    Column("message", Text, nullable=False),
    Index(None, "job_id", "line"),
)


# The web page's key for signing session cookies (web/session.py): one row, made at first use.
# The answers of ingestion requests sent with an Idempotency-Key (ingest/idempotency.py), kept
# `idempotency_hours`; written in the transaction that applies the request.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("endpoint", Text, nullable=False),
    Column("scope", Text, nullable=False),  # whose key: the credentials' project, or the records' tokens
    Column("key", Text, nullable=False),
    Column("fingerprint", LargeBinary, nullable=False),
    Column("project_ids", ARRAY(BigInteger), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("media_type", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("endpoint", "scope", "key"),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

web_keys = Table(
    "web_keys",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
