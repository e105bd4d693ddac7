"""Generated data the benches share: the plan names of the ingestion benches' payloads, and the SQL loader
of the read benches' profiles (with the per-property times, `prop_times`, that profiles written through
/engage carry: about as big again as the properties)."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from harness.db import drop_indexes, rebuild_indexes

PLANS = ["free", "starter", "pro", "team", "enterprise"]
LOAD_CHUNK = 100_000

# One statement per chunk; the subquery keeps random() per row (Postgres does not flatten a subquery with
# volatile functions in its target list).
LOAD_SQL = """
INSERT INTO profiles (project_id, distinct_id, properties, last_seen, prop_times, max_time)
SELECT q.pid, q.d, q.props, q.ls,
  (SELECT jsonb_object_agg(k, extract(epoch FROM q.ls)) FROM jsonb_object_keys(q.props) AS k),
  extract(epoch FROM q.ls)
FROM (
SELECT %(project_id)s::bigint AS pid, 'u' || lpad(g::text, 8, '0') AS d,
  jsonb_build_object(
    '$email', 'user' || g || '@' || (ARRAY['gmail.com', 'gmail.com', 'gmail.com', 'yahoo.com', 'outlook.com',
        'hotmail.com', 'icloud.com', 'proton.me', 'example.com', 'acme.io'])[1 + floor(r1 * 10)::int],
    '$name', (ARRAY['Ada', 'Bo', 'Chen', 'Dana', 'Emeka', 'Fatima', 'Gus', 'Hana', 'Ivan', 'Jo',
        'Kofi', 'Lena'])[1 + floor(r2 * 12)::int] || ' ' || (ARRAY['Smith', 'Müller', 'García', 'Sato',
        'Okafor', 'Dubois', 'Rossi', 'Nowak', 'Silva', 'Kim'])[1 + floor(r3 * 10)::int],
    'plan', CASE WHEN r4 < 0.10 THEN 'pro' WHEN r4 < 0.15 THEN 'team' ELSE 'free' END,
    'country', (ARRAY['US', 'US', 'US', 'US', 'GB', 'GB', 'DE', 'FR', 'IN', 'IN', 'BR', 'JP', 'CA',
        'ES', 'IT', 'NL', 'SE', 'PL', 'MX', 'NG'])[1 + floor(r5 * 20)::int],
    'age', 18 + floor(r6 * 60)::int,
    'score', round((r7 * 100)::numeric, 2),
    'tags', (ARRAY['[]', '["beta"]', '["mobile"]', '["web", "beta"]', '["vip"]', '["mobile", "vip"]',
        '["trial"]', '["api", "web", "beta"]']::jsonb[])[1 + floor(r8 * 8)::int],
    'signup', to_char(date '2023-01-01' + floor(r9 * 1000)::int, 'YYYY-MM-DD'),
    'active', r10 < 0.6
  )
  || CASE WHEN r11 < 0.8 THEN jsonb_build_object('$city', (ARRAY['Berlin', 'Paris', 'Lagos', 'Lima',
        'Osaka', 'Austin', 'Pune', 'Oslo'])[1 + floor(r12 * 8)::int]) ELSE '{}' END
  || CASE WHEN r13 < 0.3 THEN jsonb_build_object('company', 'Company ' || (g %% 5000)) ELSE '{}' END
  || CASE WHEN r14 < 0.05 THEN jsonb_build_object('referrer', (ARRAY['google', 'twitter', 'newsletter',
        'partner'])[1 + floor(r12 * 4)::int]) ELSE '{}' END AS props,
  now() - r15 * interval '365 days' AS ls, g
FROM (
  SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5, random() AS r6,
    random() AS r7, random() AS r8, random() AS r9, random() AS r10, random() AS r11, random() AS r12,
    random() AS r13, random() AS r14, random() AS r15
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
) AS s
) AS q
ORDER BY q.g
"""


def load_profiles(url: str, project_id: int, n: int) -> dict[str, Any]:
    """The profiles by SQL; GIN indexes dropped for the load and rebuilt from their definitions after it."""
    figures: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = drop_indexes(conn, "tablename = 'profiles' AND indexdef LIKE '%USING gin%'")
        conn.execute("SELECT setseed(0.42)")
        start = time.perf_counter()
        for first in range(1, n + 1, LOAD_CHUNK):
            last = min(n, first + LOAD_CHUNK - 1)
            conn.execute(LOAD_SQL, {"project_id": project_id, "first": first, "last": last})
            rate = last / (time.perf_counter() - start)
            print(f"  loaded {last:,} profiles ({rate:,.0f}/s)", end="\r", flush=True)
        figures["insert_s"] = round(time.perf_counter() - start, 1)
        print()
        figures["indexes_s"] = rebuild_indexes(conn, indexes)
        figures["indexes"] = [name for name, _ in indexes]
        start = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) profiles")
        figures["vacuum_analyze_s"] = round(time.perf_counter() - start, 1)
        row = conn.execute(
            "SELECT count(*), pg_relation_size('profiles'), pg_total_relation_size('profiles'),"
            " avg(pg_column_size(properties))::int FROM profiles"
        ).fetchone()
        assert row is not None
        figures.update(rows=row[0], heap_bytes=row[1], total_bytes=row[2], avg_properties_bytes=row[3])
        shares = conn.execute(
            "SELECT avg((properties->>'plan' = 'pro')::int)::float8 AS pro,"
            " avg((properties ? 'referrer')::int)::float8 AS referrer,"
            " avg((properties->>'country' = 'DE')::int)::float8 AS de,"
            " avg((properties->>'$email' LIKE '%gmail%')::int)::float8 AS gmail FROM profiles"
        ).fetchone()
        assert shares is not None
        figures["shares"] = dict(
            zip(("pro", "referrer", "DE", "gmail"), (round(s, 4) for s in shares), strict=True)
        )
    return figures
