-- @apply@: the whole /engage (or /groups) write of one request, in one call (one round trip).
--
-- A template: profilestore.db.templates renders it as profilestore_apply_profiles (on profiles, keyed by
-- distinct_id) and as profilestore_apply_groups (on group_profiles, keyed by group_key and group_id), so the two
-- functions are one text.  Its @...@ marks stand for what differs: @table@, @tombstones@, @kind@, the key
-- columns @key@ (@key(x)@ qualified by x), the key fields of the JSON records (@fields...@, @json...@), and
-- comparisons of keys (@eq...@).  Revision 0007; it replaces 0001_apply_profiles.sql and 0002_apply_groups.sql,
-- adding the request's limits on warnings and on list work (0007_fold.sql says how they are kept).
--
-- fast: [{"p": project_id, "d": distinct_id, "t": T, "it": true?, "set": {...}, "ft": {k: T, ...}}, ...]
--       profiles whose updates in this request are one plain `$set` (the common case), with its times;
-- slow: {"<project_id>:<distinct_id>": {"p", "d", "u": [update, ...] in arrival order, "x": true if any
--       update is a $delete}, ...}: every other profile of the request;
--       (group profiles carry their group key in "k" and their group id in "d")
-- has_delete: whether any slow group deletes.
-- warnings: [[project_id, entity, operation, property, reason], ...] found by Python's validation.
-- max_warnings: the ingestion warnings a request records per project (a summary row counts the rest);
-- max_list_work: the list elements a request's list operations may handle.
--
-- Why it is shaped this way:
-- 1. ONE INSERT ... ON CONFLICT over all the request's profiles, rows ORDER BY key: it takes every row
--    lock of the request in one global order, so two requests can never deadlock.  A fast group's `$set`
--    rides in the proposed row, so DO UPDATE is a plain JSONB concatenation on the latest committed row
--    (concurrent writers serialise on it: nothing is lost), guarded by a WHERE: its `$time` is at least
--    every stored time and the profile is well within the limits.  A slow group proposes a placeholder
--    ('"recompute"') and its DO UPDATE is skipped -- but the row is locked all the same.
-- 2. ONE UPDATE then folds (PL/pgSQL, 0007_fold.sql) the slow groups and any fast group whose WHERE failed
--    (found exactly: its row's xmin is not ours; looked for only when the row count says one failed).
--    Every row it touches is already locked by this transaction, so it waits for nobody.
-- 3. Profiles that end absent ($delete, or only $unset/$remove on a missing one) are marked
--    properties = 'null' by the fold and deleted; deletions keep a tombstone.  Nobody else sees a marker.
-- 4. Fast groups are inserted without looking at tombstones (usually there are none).  With a fresh
--    snapshot, rows of this request that do not know of an active tombstone -- an old deletion, or one that
--    committed concurrently -- are computed again from it.
CREATE FUNCTION @apply@(
    fast jsonb, slow jsonb, has_delete boolean, warnings jsonb,
    now_t double precision, tomb_secs double precision, max_props integer, max_bytes integer,
    max_warnings integer, max_list_work bigint
) RETURNS void LANGUAGE plpgsql AS $apply$
DECLARE
    n_fast integer := jsonb_array_length(fast);
    affected integer;
    fast_skipped boolean;
    fix record;
    f record;
BEGIN
    PERFORM set_config('profilestore.max_warnings', max_warnings::text, true),
            set_config('profilestore.max_list_work', max_list_work::text, true);

    INSERT INTO @table@ AS p (project_id, @key@, properties, prop_times, max_time, last_seen)
    SELECT g.project_id, @key(g)@, g.props, g.times, g.t, g.last_seen
    FROM (
        SELECT r.p AS project_id, @fields_as(r)@, r.set AS props, r.ft AS times, r.t,
               CASE WHEN r.it THEN NULL ELSE to_timestamp(r.t) END AS last_seen
        FROM jsonb_to_recordset(fast) AS r(p bigint, @field_types@, t float8, it boolean, set jsonb, ft jsonb)
        UNION ALL
        SELECT (e.value->>'p')::bigint, @json(e)@, '"recompute"', '{}', NULL, NULL
        FROM jsonb_each(slow) AS e
    ) AS g
    ORDER BY g.project_id, @key(g)@
    ON CONFLICT (project_id, @key@) DO UPDATE SET
        properties = p.properties || excluded.properties,
        prop_times = p.prop_times || excluded.prop_times,
        max_time = excluded.max_time,
        last_seen = greatest(p.last_seen, excluded.last_seen),
        updated_at = now()
    WHERE jsonb_typeof(excluded.properties) = 'object'
      AND excluded.max_time >= coalesce(p.max_time, '-infinity')
      -- >= 8 bytes of JSONB header per pair: under 8 * max_props bytes is under max_props pairs
      AND pg_column_size(p.properties) + pg_column_size(excluded.properties) <= 8 * max_props;
    GET DIAGNOSTICS affected = ROW_COUNT;
    -- Rows written: every fast group that applied, plus a placeholder per new slow profile.
    fast_skipped := affected < n_fast OR (slow <> '{}' AND n_fast > 0);

    IF slow <> '{}' OR fast_skipped THEN
        UPDATE @table@ AS p
        SET (properties, prop_times, max_time, last_seen, delete_time, delete_until, updated_at) = (
            SELECT CASE WHEN s.exists_ THEN s.props ELSE 'null' END, s.times, s.max_time,
                   to_timestamp(s.last_seen), s.del_t, s.del_until, now()
            FROM profilestore_fold(
                p.project_id, @kind@, @entity(p)@, p.properties <> '"recompute"',
                p.properties, p.prop_times, p.max_time, extract(epoch FROM p.last_seen)::float8,
                CASE WHEN p.properties = '"recompute"' THEN todo.delete_time ELSE p.delete_time END,
                CASE WHEN p.properties = '"recompute"' THEN todo.delete_until ELSE p.delete_until END,
                todo.updates, now_t, tomb_secs, max_props, max_bytes) AS s)
        FROM (
            SELECT k.project_id, @key(k)@, k.updates, k.is_slow, tb.delete_time, tb.delete_until
            FROM (
                SELECT (e.value->>'p')::bigint AS project_id, @json_as(e)@,
                       e.value->'u' AS updates, true AS is_slow
                FROM jsonb_each(slow) AS e
                UNION ALL
                SELECT r.p, @fields(r)@,
                       jsonb_build_array(CASE WHEN r.it THEN jsonb_build_object('t', r.t, 'set', r.set, 'it', true)
                                              ELSE jsonb_build_object('t', r.t, 'set', r.set) END),
                       false
                FROM jsonb_to_recordset(fast) AS r(p bigint, @field_types@, t float8, it boolean, set jsonb)
                WHERE fast_skipped
            ) AS k
            LEFT JOIN @tombstones@ AS tb
                   ON tb.project_id = k.project_id AND @eq(tb, k)@
                  AND tb.delete_until > now_t
        ) AS todo
        WHERE p.project_id = todo.project_id AND @eq(p, todo)@
          AND (todo.is_slow OR NOT p.xmin = pg_current_xact_id()::xid);
    END IF;

    -- Fast rows inserted without knowing an active tombstone: compute them again from it.
    IF EXISTS (SELECT FROM @tombstones@) THEN
        FOR fix IN
            SELECT tb.project_id, @key(tb)@, tb.delete_time, tb.delete_until, r.t, r.it, r.set
            FROM jsonb_to_recordset(fast) AS r(p bigint, @field_types@, t float8, it boolean, set jsonb)
            JOIN @tombstones@ AS tb ON tb.project_id = r.p AND @eq_fields(tb, r)@
            JOIN @table@ AS p ON p.project_id = r.p AND @eq_fields(p, r)@
            WHERE tb.delete_until > now_t AND tb.delete_time > coalesce(p.delete_time, '-infinity')
            ORDER BY @positions@
        LOOP
            SELECT * INTO f FROM profilestore_fold(fix.project_id, @kind@, @entity(fix)@, false, NULL,
                NULL, NULL, NULL, fix.delete_time, fix.delete_until,
                jsonb_build_array(CASE WHEN fix.it THEN jsonb_build_object('t', fix.t, 'set', fix.set, 'it', true)
                                       ELSE jsonb_build_object('t', fix.t, 'set', fix.set) END),
                now_t, tomb_secs, max_props, max_bytes);
            IF f.exists_ THEN
                UPDATE @table@ SET properties = f.props, prop_times = f.times, max_time = f.max_time,
                    last_seen = to_timestamp(f.last_seen), delete_time = f.del_t, delete_until = f.del_until
                WHERE project_id = fix.project_id AND @eq_bare(fix)@;
            ELSE
                DELETE FROM @table@ WHERE project_id = fix.project_id AND @eq_bare(fix)@;
            END IF;
        END LOOP;
    END IF;

    IF slow <> '{}' THEN
        IF has_delete THEN
            -- Deletions keep a tombstone; the newest deletion wins.
            INSERT INTO @tombstones@ AS tb (project_id, @key@, delete_time, delete_until)
            SELECT p.project_id, @key(p)@, p.delete_time, p.delete_until
            FROM jsonb_each(slow) AS e
            JOIN @table@ AS p ON p.project_id = (e.value->>'p')::bigint AND @eq_json(p, e)@
            WHERE e.value ? 'x' AND p.delete_time IS NOT NULL
            ORDER BY @positions@
            ON CONFLICT (project_id, @key@) DO UPDATE
                SET delete_time = greatest(tb.delete_time, excluded.delete_time),
                    delete_until = greatest(tb.delete_until, excluded.delete_until);
        END IF;
        -- The profiles that ended absent go.
        DELETE FROM @table@ AS p
        USING jsonb_each(slow) AS e
        WHERE p.project_id = (e.value->>'p')::bigint AND @eq_json(p, e)@
          AND p.properties = 'null';
    END IF;

    -- Python's warnings go through the same per-request count as the fold's.
    IF jsonb_array_length(warnings) > 0 THEN
        PERFORM profilestore_warn((w->>0)::bigint, @kind@, w->>1, w->>2, w->>3, w->>4)
        FROM jsonb_array_elements(warnings) AS w;
    END IF;
    PERFORM profilestore_warnings_counted();
END
$apply$;
