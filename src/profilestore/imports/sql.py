"""The SQL of an import, in one place, with the reason for its shape.

A chunk of rows (`import_chunk_rows`, one per identifier: duplicates within the chunk were merged already)
is one transaction:
1. COPY into `import_stage`, a temporary table (no WAL, private to the import's connection): the fastest way
   into Postgres, and the rows are then worked on set-based, not one statement per row.
2. CLASSIFY joins the stage with the stored profiles (one index lookup per row) and with `import_seen`, the
   identifiers this import applied in earlier chunks: the mode's skips (create: the profile existed before the
   import; update: it does not exist), duplicates across chunks, rows that change nothing, and properties a
   newer update already stored (an /engage update with a later `$time` than the import's start).
3. APPLY hands the rows that change something to profilestore_apply_profiles (or _groups): the very function
   of /engage, as its `fast` list of plain `$set`s, so an import follows /engage's rules exactly: the lock
   order, `$time` per property, tombstones, the limits on a profile's size.  A row that changes nothing is
   not written: re-running an import writes nothing.
4. The identifiers go into `import_seen`, into the static cohort (`cohort`), and the job's row gets the
   progress, in the same transaction: a crash loses at most the chunk in flight, and running the import again
   converges to the same profiles.
Table names come from TABLES, never from input.
"""

from __future__ import annotations

from typing import Literal

TABLES: dict[Literal["profile", "group"], dict[str, str]] = {
    "profile": {
        "table": "profiles",
        "match": "p.distinct_id = s.id",
        "apply": "profilestore_apply_profiles",
    },
    "group": {
        "table": "group_profiles",
        "match": "p.group_key = %(group_key)s AND p.group_id = s.id",
        "apply": "profilestore_apply_groups",
    },
}

TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS import_stage (line bigint, id text, lines bigint[], rec jsonb)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS import_plan (
    line bigint, id text, lines bigint[], rec jsonb, stored boolean, same boolean, newer text[],
    dup_line bigint, skip text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS import_seen (id text PRIMARY KEY, line bigint);
TRUNCATE pg_temp.import_seen;
"""

# Per chunk (SET LOCAL): index lookups, not hash joins over the whole profiles table nor a nested loop over a
# materialised scan of the project's profiles (what the planner picks when the table's statistics predate a
# big import: measured 37 -> 880 ms per chunk as they grew stale, flat without it); no JIT (its compile
# time is more than the statement's); and a larger GIN pending list, so that the indexes on properties take
# a chunk's entries in fewer, larger merges.
SESSION = """
SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_material = off;
SET LOCAL jit = off;
SET LOCAL gin_pending_list_limit = '32MB'
"""

# line: the record's last line; lines: every line it stands for (a chunk merges an identifier's rows).
COPY_STAGE = "COPY pg_temp.import_stage (line, id, lines, rec) FROM STDIN"

# `same`: every value of the row equals the stored one (a row that changes nothing is not written);
# `newer`: the row's properties that a later update already set to another value (the fold keeps those; a
# property's time is T, or [T, "o"|"u"] after $set_once / $unset);
# only looked for when the profile's newest time is after the import's start (max_time >= every property's).
CLASSIFY = """
INSERT INTO pg_temp.import_plan (line, id, lines, rec, stored, same, newer, dup_line, skip)
SELECT c.line, c.id, c.lines, c.rec, c.stored, c.same, c.newer, c.dup_line,
       CASE WHEN %(mode)s = 'create' AND c.stored AND c.dup_line IS NULL THEN 'exists'
            WHEN %(mode)s = 'update' AND NOT c.stored AND c.dup_line IS NULL THEN 'missing' END
FROM (
    SELECT s.line, s.id, s.lines, s.rec, p.properties IS NOT NULL AS stored,
           p.properties IS NOT NULL AND NOT EXISTS (
               SELECT FROM jsonb_each(s.rec->'set') AS e WHERE p.properties->e.key IS DISTINCT FROM e.value
           ) AS same,
           CASE WHEN p.max_time > %(t)s THEN ARRAY(
               SELECT e.key FROM jsonb_each(p.prop_times) AS e
               WHERE (CASE jsonb_typeof(e.value) WHEN 'array' THEN e.value->>0
                                                         ELSE e.value #>> '{{}}' END)::float8 > %(t)s
                 AND s.rec->'set' ? e.key
                 AND p.properties->e.key IS DISTINCT FROM s.rec->'set'->e.key
               ORDER BY e.key) END AS newer,
           seen.line AS dup_line
    FROM pg_temp.import_stage AS s
    LEFT JOIN pg_temp.import_seen AS seen ON seen.id = s.id
    LEFT JOIN {table} AS p ON p.project_id = %(project_id)s AND {match}
) AS c
"""

# What the chunk did, line by line where a warning is due (a skipped record: each of its lines; a repeat:
# the line before it, in this chunk or an earlier one), and counted by lines.
WARNINGS = """
SELECT l AS line, id, skip AS kind, NULL AS prop, NULL::bigint AS other
FROM pg_temp.import_plan, unnest(lines) AS l WHERE skip IS NOT NULL
UNION ALL
SELECT lines[1], id, 'duplicate', NULL, dup_line
FROM pg_temp.import_plan WHERE skip IS NULL AND dup_line IS NOT NULL
UNION ALL
SELECT lines[i], id, 'duplicate', NULL, lines[i - 1]
FROM pg_temp.import_plan, generate_subscripts(lines, 1) AS i WHERE skip IS NULL AND i > 1
UNION ALL
SELECT line, id, 'newer_value', k, NULL FROM pg_temp.import_plan, unnest(newer) AS k WHERE skip IS NULL
ORDER BY 1, 3, 4
"""

COUNTS = """
SELECT coalesce(sum(1) FILTER (WHERE skip IS NULL AND NOT stored AND dup_line IS NULL), 0) AS created,
       coalesce(sum(n - 1) FILTER (WHERE skip IS NULL AND NOT stored AND dup_line IS NULL), 0)
       + coalesce(sum(n) FILTER (WHERE skip IS NULL AND (stored OR dup_line IS NOT NULL) AND NOT same), 0)
           AS updated,
       coalesce(sum(n) FILTER (WHERE skip IS NULL AND same), 0) AS unchanged,
       coalesce(sum(n) FILTER (WHERE skip = 'exists'), 0) AS exists,
       coalesce(sum(n) FILTER (WHERE skip = 'missing'), 0) AS missing
FROM (SELECT *, cardinality(lines) AS n FROM pg_temp.import_plan) AS plan
"""

APPLY = """
SELECT {apply}(
    coalesce((SELECT jsonb_agg(rec) FROM pg_temp.import_plan WHERE skip IS NULL AND NOT same), '[]'),
    '{{}}'::jsonb, false, '[]'::jsonb, %(now)s, %(tomb_secs)s, %(max_props)s, %(max_bytes)s,
    %(max_warnings)s, %(max_list_work)s)
"""

SEEN = """
INSERT INTO pg_temp.import_seen (id, line)
SELECT id, line FROM pg_temp.import_plan WHERE skip IS NULL
ON CONFLICT (id) DO UPDATE SET line = excluded.line
"""

COHORT_MEMBERS = """
INSERT INTO cohort_members (cohort_id, distinct_id)
SELECT %(cohort_id)s, id FROM pg_temp.import_plan WHERE skip IS NULL ORDER BY id
ON CONFLICT DO NOTHING
"""

# A static cohort of that name is reused (re-running an import adds nothing new to it); a dynamic one of that
# name is not touched (ImportError).
FIND_COHORT = "SELECT id, is_static FROM cohorts WHERE project_id = %s AND name = %s ORDER BY id LIMIT 1"
CREATE_COHORT = (
    "INSERT INTO cohorts (project_id, name, description, is_static) VALUES (%s, %s, %s, true) RETURNING id"
)

COPY_WARNINGS = "COPY import_warnings (job_id, line, kind, column_name, message) FROM STDIN"

# ---- jobs -------------------------------------------------------------------------------------------------

CREATE_JOB = """
INSERT INTO import_jobs (project_id, state, source, options, upload_path, bytes_total)
VALUES (%(project_id)s, %(state)s, %(source)s, %(options)s, %(upload_path)s, %(bytes_total)s)
RETURNING id
"""
# The web page's wizard uploads first and chooses the options after: a `draft` job holds the file meanwhile.
QUEUE_DRAFT = """
UPDATE import_jobs SET state = 'queued', options = %(options)s, heartbeat_at = now()
WHERE id = %(id)s AND project_id = %(project_id)s AND state = 'draft'
"""
UPLOAD_PATH = "SELECT upload_path FROM import_jobs WHERE id = %s AND project_id = %s"
DISCARD_DRAFT = (
    "DELETE FROM import_jobs WHERE id = %s AND project_id = %s AND state = 'draft' RETURNING upload_path"
)
RECENT_JOBS = """
SELECT id, state, source, rows_done, rows_total, summary, created_at, finished_at FROM import_jobs
WHERE project_id = %s AND state <> 'draft' ORDER BY id DESC LIMIT %s
"""
START_JOB = "UPDATE import_jobs SET state = 'running', started_at = now(), heartbeat_at = now() WHERE id = %s"
PROGRESS = """
UPDATE import_jobs SET rows_done = %(rows_done)s, rows_total = %(rows_total)s, bytes_done = %(bytes_done)s,
       bytes_total = %(bytes_total)s, summary = %(summary)s, heartbeat_at = now()
WHERE id = %(id)s
"""
FINISH_JOB = """
UPDATE import_jobs SET state = %(state)s, summary = %(summary)s, error = %(error)s, rows_done = %(rows_done)s,
       rows_total = %(rows_total)s, bytes_done = bytes_total, finished_at = now(), heartbeat_at = now(),
       upload_path = NULL
WHERE id = %(id)s
"""
# A job is shown as interrupted when its process stopped without saying so (no heartbeat for this long).
STALE_SECONDS = 120
READ_JOB = f"""
SELECT id, project_id, CASE WHEN state IN ('queued', 'running')
                             AND heartbeat_at < now() - interval '{STALE_SECONDS} seconds'
                            THEN 'interrupted' ELSE state END AS state,
       source, options, rows_done, rows_total, bytes_done, bytes_total, summary, error,
       created_at, started_at, finished_at, heartbeat_at, upload_path
FROM import_jobs WHERE id = %s AND project_id = %s
"""
READ_WARNINGS = """
SELECT line, kind, column_name AS column, message FROM import_warnings WHERE job_id = %s
ORDER BY line, kind LIMIT %s
"""
ALL_WARNINGS = (
    "SELECT line, kind, column_name, message FROM import_warnings WHERE job_id = %s ORDER BY line, kind"
)
COUNT_WARNINGS = "SELECT count(*) AS n FROM import_warnings WHERE job_id = %s"
# A job whose process died without a word (SIGKILL, a crash, a machine gone) keeps `running`: after an hour
# without a heartbeat it is marked interrupted, and its upload file (returned here) is deleted.
EXPIRE_STALE = """
WITH stale AS (
    SELECT id, upload_path FROM import_jobs
    WHERE state IN ('queued', 'running') AND heartbeat_at < now() - interval '1 hour'
    FOR UPDATE SKIP LOCKED
)
UPDATE import_jobs AS j SET state = 'interrupted', finished_at = now(), upload_path = NULL,
       error = coalesce(j.error,
                        'its process stopped without finishing; running the import again is harmless')
FROM stale WHERE j.id = stale.id
RETURNING stale.upload_path
"""
# Drafts never started (the wizard left at its second step) go after a day, with their files.
EXPIRE_DRAFTS = """
DELETE FROM import_jobs WHERE id IN (
    SELECT id FROM import_jobs WHERE state = 'draft' AND created_at < now() - interval '1 day'
    FOR UPDATE SKIP LOCKED)
RETURNING upload_path
"""
# Finished jobs older than the retention go, with their warnings (ON DELETE CASCADE).
SWEEP_JOBS = """
DELETE FROM import_jobs WHERE id IN (
    SELECT id FROM import_jobs WHERE finished_at < now() - %(days)s * interval '1 day'
    FOR UPDATE SKIP LOCKED LIMIT 1000)
"""
