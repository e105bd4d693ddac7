-- profilestore_apply_profiles: the whole /engage write of one request, in one call (one round trip).
--
-- batch: {"<project_id>:<distinct_id>": group, ...}; a group is either
--   fast: one plain `$set` update with its key and its times added:
--         {"p": project_id, "d": distinct_id, "t": T, "set": {...}, "it": true?, "ft": {k: T, ...}}
--   slow: {"p": ..., "d": ..., "u": [update, ...] in arrival order, "x": true if any update is a $delete}
-- has_slow / has_delete: whether any group is slow / deletes (so the common case skips those statements).
-- warnings: [[project_id, distinct_id, operation, property, reason], ...] found by Python's validation.
--
-- Why it is shaped this way:
-- * One INSERT ... ON CONFLICT DO UPDATE for all profiles of the request, rows ORDER BY key, so every
--   request takes its row locks in one global order: two requests can never deadlock.  ON CONFLICT DO
--   UPDATE always works on the latest committed row, so concurrent `$add`s to one profile add up exactly.
-- * Python groups a request's updates by profile (arrival order kept), so a key occurs once per statement.
-- * The fast path (one `$set` at least as new as everything stored, well within the limits) is a JSONB
--   concatenation in plain SQL; everything else goes through profilestore_fold (PL/pgSQL).
-- * A profile that ends absent ($delete, or only $unset/$remove on a missing one) is written with the
--   marker properties = 'null' and deleted by a later statement of this call: nobody else ever sees it.
-- * New rows of fast groups are computed without looking at profile tombstones (the table is usually
--   empty; slow groups do look).  A fresh snapshot after the upsert then finds every row of the batch
--   that does not know of an active tombstone (its delete_time is older) -- an old deletion, or one that
--   committed concurrently -- and recomputes it from the tombstone.  Our rows are locked by us, so this
--   is race-free.
CREATE FUNCTION profilestore_apply_profiles(
    batch jsonb, has_slow boolean, has_delete boolean, warnings jsonb,
    now_t double precision, tomb_secs double precision, max_props integer, max_bytes integer
) RETURNS void LANGUAGE plpgsql AS $apply$
DECLARE
    fix record;
    f record;
BEGIN
    INSERT INTO profiles AS p (project_id, distinct_id, properties, prop_times, max_time, last_seen,
                               delete_time, delete_until)
    SELECT i.project_id, i.distinct_id, n.props, n.times, n.max_time, to_timestamp(n.last_seen),
           n.del_t, n.del_until
    FROM (
        SELECT (e.value->>'p')::bigint AS project_id, e.value->>'d' AS distinct_id, e.value AS g,
               NOT e.value ? 'ft' AND EXISTS (
                   SELECT FROM profiles AS q
                   WHERE q.project_id = (e.value->>'p')::bigint AND q.distinct_id = e.value->>'d') AS present
        FROM jsonb_each(batch) AS e
    ) AS i
    -- a slow group sees the tombstone of its profile (fast ones are checked after the upsert, below)
    LEFT JOIN LATERAL (
        SELECT t.delete_time, t.delete_until FROM profile_tombstones AS t
        WHERE NOT i.g ? 'ft' AND t.project_id = i.project_id AND t.distinct_id = i.distinct_id
          AND t.delete_until > now_t
    ) AS tb ON true
    CROSS JOIN LATERAL (
        SELECT i.g->'set' AS props, i.g->'ft' AS times, (i.g->>'t')::float8 AS max_time,
               CASE WHEN i.g ? 'it' THEN NULL ELSE (i.g->>'t')::float8 END AS last_seen,
               NULL::float8 AS del_t, NULL::float8 AS del_until
        WHERE i.g ? 'ft'
        UNION ALL
        -- a profile absent from our snapshot: fold the updates into an empty one
        SELECT CASE WHEN s.exists_ THEN s.props ELSE 'null' END, s.times, s.max_time, s.last_seen,
               s.del_t, s.del_until
        FROM profilestore_fold(i.project_id, 'profile', i.distinct_id, false, NULL, NULL, NULL, NULL,
                               tb.delete_time, tb.delete_until, i.g->'u', now_t, tomb_secs,
                               max_props, max_bytes) AS s
        WHERE NOT i.g ? 'ft' AND NOT i.present
        UNION ALL
        -- a profile we saw: it will conflict, and DO UPDATE folds into it.  Only if a concurrent $delete
        -- removed it meanwhile is this placeholder inserted; the loop below then recomputes it.
        SELECT '"recompute"'::jsonb, '{}'::jsonb, NULL, NULL, NULL, NULL
        WHERE NOT i.g ? 'ft' AND i.present
    ) AS n
    ORDER BY i.project_id, i.distinct_id
    ON CONFLICT (project_id, distinct_id) DO UPDATE SET
        (properties, prop_times, max_time, last_seen, delete_time, delete_until, updated_at) = (
        SELECT n.props, n.times, n.max_time, to_timestamp(n.last_seen), n.del_t, n.del_until, now()
        FROM (SELECT batch->(p.project_id || ':' || p.distinct_id) AS g) AS x
        CROSS JOIN LATERAL (SELECT x.g ? 'ft' AND (x.g->>'t')::float8 >= coalesce(p.max_time, '-infinity')
                                   -- >= 8 bytes of JSONB header per pair: under 8*max_props bytes,
                                   -- under max_props pairs (and far under max_bytes)
                                   AND pg_column_size(p.properties) + pg_column_size(x.g->'set')
                                       <= 8 * max_props AS fast) AS c
        CROSS JOIN LATERAL (
            SELECT p.properties || (x.g->'set') AS props, p.prop_times || (x.g->'ft') AS times,
                   (x.g->>'t')::float8 AS max_time,
                   CASE WHEN x.g ? 'it' THEN extract(epoch FROM p.last_seen)::float8
                        ELSE greatest(extract(epoch FROM p.last_seen)::float8, (x.g->>'t')::float8)
                   END AS last_seen,
                   p.delete_time AS del_t, p.delete_until AS del_until
            WHERE c.fast
            UNION ALL
            SELECT CASE WHEN s.exists_ THEN s.props ELSE 'null' END, s.times, s.max_time, s.last_seen,
                   s.del_t, s.del_until
            FROM profilestore_fold(p.project_id, 'profile', p.distinct_id, true, p.properties,
                                   p.prop_times, p.max_time, extract(epoch FROM p.last_seen)::float8,
                                   p.delete_time, p.delete_until,
                                   coalesce(x.g->'u', jsonb_build_array((x.g) - 'p' - 'd' - 'ft')),
                                   now_t, tomb_secs, max_props, max_bytes) AS s
            WHERE NOT c.fast
        ) AS n);

    -- Rows to compute again from an empty profile (they are locked by us): placeholders whose profile a
    -- concurrent $delete removed, and rows computed without knowing an active tombstone.
    FOR fix IN
        SELECT p.project_id, p.distinct_id, tb.delete_time, tb.delete_until
        FROM jsonb_each(batch) AS e
        JOIN profiles AS p ON p.project_id = (e.value->>'p')::bigint AND p.distinct_id = e.value->>'d'
        LEFT JOIN profile_tombstones AS tb
               ON tb.project_id = p.project_id AND tb.distinct_id = p.distinct_id AND tb.delete_until > now_t
        WHERE has_slow AND NOT e.value ? 'ft' AND p.properties = '"recompute"'
        UNION
        SELECT tb.project_id, tb.distinct_id, tb.delete_time, tb.delete_until
        FROM profile_tombstones AS tb
        JOIN profiles AS p USING (project_id, distinct_id)
        WHERE batch ? (tb.project_id || ':' || tb.distinct_id)
          AND tb.delete_until > now_t AND tb.delete_time > coalesce(p.delete_time, '-infinity')
        ORDER BY 1, 2
    LOOP
        SELECT * INTO f FROM profilestore_fold(fix.project_id, 'profile', fix.distinct_id, false, NULL,
            NULL, NULL, NULL, fix.delete_time, fix.delete_until,
            coalesce(batch->(fix.project_id || ':' || fix.distinct_id)->'u',
                     jsonb_build_array((batch->(fix.project_id || ':' || fix.distinct_id)) - 'p' - 'd' - 'ft')),
            now_t, tomb_secs, max_props, max_bytes);
        IF f.exists_ THEN
            UPDATE profiles SET properties = f.props, prop_times = f.times, max_time = f.max_time,
                last_seen = to_timestamp(f.last_seen), delete_time = f.del_t, delete_until = f.del_until
            WHERE project_id = fix.project_id AND distinct_id = fix.distinct_id;
        ELSE
            DELETE FROM profiles WHERE project_id = fix.project_id AND distinct_id = fix.distinct_id;
        END IF;
    END LOOP;

    IF has_delete THEN
        -- Deletions keep a tombstone; the newest deletion wins.
        INSERT INTO profile_tombstones AS tb (project_id, distinct_id, delete_time, delete_until)
        SELECT p.project_id, p.distinct_id, p.delete_time, p.delete_until
        FROM jsonb_each(batch) AS e
        JOIN profiles AS p ON p.project_id = (e.value->>'p')::bigint AND p.distinct_id = e.value->>'d'
        WHERE e.value ? 'x' AND p.delete_time IS NOT NULL
        ORDER BY 1, 2
        ON CONFLICT (project_id, distinct_id) DO UPDATE
            SET delete_time = greatest(tb.delete_time, excluded.delete_time),
                delete_until = greatest(tb.delete_until, excluded.delete_until);
    END IF;
    IF has_slow THEN
        -- The profiles that ended absent go.
        DELETE FROM profiles AS p
        USING jsonb_each(batch) AS e
        WHERE p.project_id = (e.value->>'p')::bigint AND p.distinct_id = e.value->>'d'
          AND NOT e.value ? 'ft' AND p.properties = 'null';
    END IF;

    IF jsonb_array_length(warnings) > 0 THEN
        INSERT INTO ingestion_warnings (project_id, kind, entity, operation, property, reason)
        SELECT (w->>0)::bigint, 'profile', w->>1, w->>2, w->>3, w->>4 FROM jsonb_array_elements(warnings) AS w;
    END IF;
END
$apply$;
