"""The read API's SQL: where a profile's properties come from, and the pagination session statements.

Every value from a request is a bound parameter (expressions/ compiles `where` the same way); identifiers here
are constants of this module.  Why the statements are shaped this way:
- A session's first request counts the matches and reads page 0; then ONE statement numbers every match in
  the session's order and stores them a row per page (`query_session_pages`), in the same snapshot
  (sessions.py).  Every later page is a primary-key read of one row, whatever its number (deep pages cost
  what page 0 costs), and nothing that changes afterwards can move a profile between pages.
- The profiles of a page are joined by primary key `(project_id, distinct_id)` from the stored ids
  (`unnest ... WITH ORDINALITY` keeps the session's order).
- The page's JSON is built by Postgres (`jsonb_build_object(...)::text`), so Python never decodes the
  properties of a page just to encode them again.
"""

from __future__ import annotations

from psycopg import sql

from profilestore.expressions import Scope, Source
from profilestore.profile_tables import USER_PROFILES

# The first request of a session (sessions.py): the advisory lock that later pages wait on while the session
# is built, the count, and page 0's ids; all in the session's repeatable-read snapshot.
LOCK_SESSION = "SELECT pg_advisory_xact_lock(hashtextextended(%(session_id)s, 0))"
WAIT_FOR_SESSION = "SELECT pg_advisory_xact_lock_shared(hashtextextended(%(session_id)s, 0))"
COUNT_MATCHES = "SELECT count(*) AS total FROM {source} WHERE {where}"
FIRST_IDS = """
SELECT array(SELECT {distinct_id} FROM {source} WHERE {where} ORDER BY {order} LIMIT %(page_size)s) AS ids
"""

# Every matching id, numbered in the session's order, stored a row per page: any later page is then one
# primary-key read, whatever its number.
CREATE_SESSION = """
WITH matched AS (
    SELECT {distinct_id} AS id, row_number() OVER (ORDER BY {order}) - 1 AS n
    FROM {source}
    WHERE {where}
), pages AS (
    INSERT INTO query_session_pages (session_id, page, ids)
    SELECT %(session_id)s, n / %(page_size)s, array_agg(id ORDER BY n)
    FROM matched GROUP BY n / %(page_size)s
    RETURNING cardinality(ids) AS size
)
INSERT INTO query_sessions (id, project_id, group_key, page_size, total, all_users)
SELECT %(session_id)s, %(project_id)s, %(group_key)s, %(page_size)s, coalesce(sum(size), 0), %(all_users)s
FROM pages
"""

# A session whose matches all fit on page 0 (a lookup by distinct_id, a narrow filter): its ids are known
# already, so it is stored at once, without numbering the matches again.
CREATE_SMALL_SESSION = """
WITH page AS (
    INSERT INTO query_session_pages (session_id, page, ids)
    SELECT %(session_id)s, 0, %(first_ids)s::text[] WHERE cardinality(%(first_ids)s::text[]) > 0
)
INSERT INTO query_sessions (id, project_id, group_key, page_size, total, all_users)
VALUES (%(session_id)s, %(project_id)s, %(group_key)s, %(page_size)s, %(total)s, %(all_users)s)
"""

# Touch the session at most once a minute: concurrent page requests then rarely wait on its row lock.
OPEN_SESSION = """
WITH touched AS (
    UPDATE query_sessions SET touched_at = now()
    WHERE id = %(session_id)s AND project_id = %(project_id)s
      AND touched_at > now() - make_interval(secs => %(idle)s)
      AND touched_at < now() - interval '1 minute'
)
SELECT group_key, page_size, total, all_users FROM query_sessions
WHERE id = %(session_id)s AND project_id = %(project_id)s
  AND touched_at > now() - make_interval(secs => %(idle)s)
"""

# {join} is a LEFT JOIN for sessions of a cohort with include_all_users (members without a profile answer
# `$properties: {{}}`), else a JOIN (a profile deleted since the first page drops out).
PAGE = """
SELECT jsonb_build_object('$distinct_id', u.id, '$properties', coalesce({properties}, '{{}}'))::text AS row
FROM unnest({ids}) WITH ORDINALITY AS u(id, n)
{join} {table} AS p ON {key} AND {distinct_id} = u.id
ORDER BY u.n
"""
# The ids of a stored page, and of page 0 while the session is being built ({ids} of PAGE).
STORED_PAGE_IDS = (
    "(SELECT s.ids FROM query_session_pages AS s WHERE s.session_id = %(session_id)s AND s.page = %(page)s)"
)
FIRST_PAGE_IDS = "%(first_ids)s::text[]"

EXPIRE_SESSIONS = """
WITH gone AS (
    DELETE FROM query_sessions WHERE touched_at < now() - make_interval(secs => %(idle)s) RETURNING id
)
DELETE FROM query_session_pages WHERE session_id IN (SELECT id FROM gone)
"""


def all_users_scope() -> Scope:
    """The scope of `where` and `sort_key` over profiles that may be missing (the LEFT JOIN of a cohort's
    All Users): a user without a profile has no properties."""
    scope = USER_PROFILES.scope()
    source = Source(column=sql.SQL("coalesce(p.properties, '{}'::jsonb)"), computed=scope.properties.computed)
    return Scope(properties=source)


def selected_properties(properties: sql.Composable, names: sql.Composable) -> sql.Composable:
    """Only the properties named in the text[] `names` (output_properties)."""
    return sql.SQL(
        "(SELECT coalesce(jsonb_object_agg(e.key, e.value), '{{}}') FROM jsonb_each({}) AS e"
        " WHERE e.key = ANY({}))"
    ).format(properties, names)
