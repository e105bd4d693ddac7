-- profilestore_apply_groups: the whole /groups write of one request, in one call.
--
-- The same statement shapes as profilestore_apply_profiles (0001_apply_profiles.sql, whose comment explains
-- them) on group_profiles, keyed by (project_id, group_key, group_id): "k" is the group key, "d" the group id.
-- A change to one of the two functions is a change to both.
-- Parameters as profilestore_apply_profiles, with "k" (the group key) beside "d" (the group id).
CREATE FUNCTION profilestore_apply_groups(
    fast jsonb, slow jsonb, has_delete boolean, warnings jsonb,
    now_t double precision, tomb_secs double precision, max_props integer, max_bytes integer
) RETURNS void LANGUAGE plpgsql AS $apply$
DECLARE
    n_fast integer := jsonb_array_length(fast);
    affected integer;
    fast_skipped boolean;
    fix record;
    f record;
BEGIN
    INSERT INTO group_profiles AS p (project_id, group_key, group_id, properties, prop_times, max_time, last_seen)
    SELECT g.project_id, g.group_key, g.group_id, g.props, g.times, g.t, g.last_seen
    FROM (
        SELECT r.p AS project_id, r.k AS group_key, r.d AS group_id, r.set AS props, r.ft AS times, r.t,
               CASE WHEN r.it THEN NULL ELSE to_timestamp(r.t) END AS last_seen
        FROM jsonb_to_recordset(fast) AS r(p bigint, k text, d text, t float8, it boolean, set jsonb, ft jsonb)
        UNION ALL
        SELECT (e.value->>'p')::bigint, e.value->>'k', e.value->>'d', '"recompute"', '{}', NULL, NULL
        FROM jsonb_each(slow) AS e
    ) AS g
    ORDER BY g.project_id, g.group_key, g.group_id
    ON CONFLICT (project_id, group_key, group_id) DO UPDATE SET
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
        UPDATE group_profiles AS p
        SET (properties, prop_times, max_time, last_seen, delete_time, delete_until, updated_at) = (
            SELECT CASE WHEN s.exists_ THEN s.props ELSE 'null' END, s.times, s.max_time,
                   to_timestamp(s.last_seen), s.del_t, s.del_until, now()
            FROM profilestore_fold(
                p.project_id, 'group', p.group_key || '/' || p.group_id, p.properties <> '"recompute"',
                p.properties, p.prop_times, p.max_time, extract(epoch FROM p.last_seen)::float8,
                CASE WHEN p.properties = '"recompute"' THEN todo.delete_time ELSE p.delete_time END,
                CASE WHEN p.properties = '"recompute"' THEN todo.delete_until ELSE p.delete_until END,
                todo.updates, now_t, tomb_secs, max_props, max_bytes) AS s)
        FROM (
            SELECT k.project_id, k.group_key, k.group_id, k.updates, k.is_slow, tb.delete_time, tb.delete_until
            FROM (
                SELECT (e.value->>'p')::bigint AS project_id, e.value->>'k' AS group_key,
                       e.value->>'d' AS group_id, e.value->'u' AS updates, true AS is_slow
                FROM jsonb_each(slow) AS e
                UNION ALL
                SELECT r.p, r.k, r.d,
                       jsonb_build_array(CASE WHEN r.it THEN jsonb_build_object('t', r.t, 'set', r.set, 'it', true)
                                              ELSE jsonb_build_object('t', r.t, 'set', r.set) END),
                       false
                FROM jsonb_to_recordset(fast) AS r(p bigint, k text, d text, t float8, it boolean, set jsonb)
                WHERE fast_skipped
            ) AS k
            LEFT JOIN group_profile_tombstones AS tb
                   ON tb.project_id = k.project_id AND tb.group_key = k.group_key AND tb.group_id = k.group_id
                  AND tb.delete_until > now_t
        ) AS todo
        WHERE p.project_id = todo.project_id AND p.group_key = todo.group_key AND p.group_id = todo.group_id
          AND (todo.is_slow OR NOT p.xmin = pg_current_xact_id()::xid);
    END IF;

    -- Fast rows inserted without knowing an active tombstone: compute them again from it.
    IF EXISTS (SELECT FROM group_profile_tombstones) THEN
        FOR fix IN
            SELECT tb.project_id, tb.group_key, tb.group_id, tb.delete_time, tb.delete_until, r.t, r.it, r.set
            FROM jsonb_to_recordset(fast) AS r(p bigint, k text, d text, t float8, it boolean, set jsonb)
            JOIN group_profile_tombstones AS tb ON tb.project_id = r.p AND tb.group_key = r.k AND tb.group_id = r.d
            JOIN group_profiles AS p ON p.project_id = r.p AND p.group_key = r.k AND p.group_id = r.d
            WHERE tb.delete_until > now_t AND tb.delete_time > coalesce(p.delete_time, '-infinity')
            ORDER BY 1, 2, 3
        LOOP
            SELECT * INTO f FROM profilestore_fold(fix.project_id, 'group', fix.group_key || '/' || fix.group_id, false, NULL,
                NULL, NULL, NULL, fix.delete_time, fix.delete_until,
                jsonb_build_array(CASE WHEN fix.it THEN jsonb_build_object('t', fix.t, 'set', fix.set, 'it', true)
                                       ELSE jsonb_build_object('t', fix.t, 'set', fix.set) END),
                now_t, tomb_secs, max_props, max_bytes);
            IF f.exists_ THEN
                UPDATE group_profiles SET properties = f.props, prop_times = f.times, max_time = f.max_time,
                    last_seen = to_timestamp(f.last_seen), delete_time = f.del_t, delete_until = f.del_until
                WHERE project_id = fix.project_id AND group_key = fix.group_key AND group_id = fix.group_id;
            ELSE
                DELETE FROM group_profiles
                WHERE project_id = fix.project_id AND group_key = fix.group_key AND group_id = fix.group_id;
            END IF;
        END LOOP;
    END IF;

    IF slow <> '{}' THEN
        IF has_delete THEN
            -- Deletions keep a tombstone; the newest deletion wins.
            INSERT INTO group_profile_tombstones AS tb (project_id, group_key, group_id, delete_time, delete_until)
            SELECT p.project_id, p.group_key, p.group_id, p.delete_time, p.delete_until
            FROM jsonb_each(slow) AS e
            JOIN group_profiles AS p ON p.project_id = (e.value->>'p')::bigint AND p.group_key = e.value->>'k'
                                    AND p.group_id = e.value->>'d'
            WHERE e.value ? 'x' AND p.delete_time IS NOT NULL
            ORDER BY 1, 2, 3
            ON CONFLICT (project_id, group_key, group_id) DO UPDATE
                SET delete_time = greatest(tb.delete_time, excluded.delete_time),
                    delete_until = greatest(tb.delete_until, excluded.delete_until);
        END IF;
        -- The profiles that ended absent go.
        DELETE FROM group_profiles AS p
        USING jsonb_each(slow) AS e
        WHERE p.project_id = (e.value->>'p')::bigint AND p.group_key = e.value->>'k' AND p.group_id = e.value->>'d'
          AND p.properties = 'null';
    END IF;

    IF jsonb_array_length(warnings) > 0 THEN
        INSERT INTO ingestion_warnings (project_id, kind, entity, operation, property, reason)
        SELECT (w->>0)::bigint, 'group', w->>1, w->>2, w->>3, w->>4 FROM jsonb_array_elements(warnings) AS w;
    END IF;
END
$apply$;
