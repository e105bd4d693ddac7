-- profilestore_fold: apply one profile's ordered updates to its stored state (ingest.md section 3).
--
-- This is the general ("slow") path of the /engage write; the statement in ingest/sql.py takes a fast path
-- in plain SQL for the common case (one `$set` newer than everything stored) and calls this function for
-- everything else.  A migration owns this text: change it with a new revision, never in place.
--
-- State: exists, props (the properties), times ({name: T} for a $set, {name: [T, "o"]} for a $set_once,
-- {name: [T, "u"]} for an $unset tombstone; the common case is the smallest), max_time (greatest T in times and of a deletion), last_seen (epoch seconds),
-- del_t / del_until (newest $delete's T and, as epoch seconds, when its tombstone expires).
-- Updates: [{"t": T, "it": true?, "set": {}, "once": {}, "add": {}, "union": {k: [..]}, "append": {},
--            "remove": {}, "unset": [..], "del": true?}] in arrival order, already validated by Python.
-- Conflicts with stored state are written to ingestion_warnings and leave that property as it was.
-- The time T of a `times` entry (see profilestore_fold).
CREATE FUNCTION profilestore_time(entry jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(entry) WHEN 'number' THEN entry::text::float8 ELSE (entry->>0)::float8 END
$$;

CREATE FUNCTION profilestore_warn(
    project bigint, kind text, entity text, operation text, property text, reason text
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO ingestion_warnings (project_id, kind, entity, operation, property, reason)
    VALUES (project, kind, entity, operation, property, reason)
$$;

-- Sets props[k] = v unless that breaks a profile limit; returns NULL (and records why) when it would.
CREATE FUNCTION profilestore_put(
    props jsonb, k text, v jsonb, max_props integer, max_bytes integer,
    project bigint, kind text, entity text, operation text
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    merged jsonb := props || jsonb_build_object(k, v);
    n integer;
BEGIN
    IF pg_column_size(merged) > max_bytes THEN
        PERFORM profilestore_warn(project, kind, entity, operation, k,
            format('the profile would be %s bytes, over the limit of %s', pg_column_size(merged), max_bytes));
        RETURN NULL;
    END IF;
    -- Each pair costs at least 8 bytes of JSONB header, so a small object cannot hold too many keys.
    IF NOT props ? k AND pg_column_size(merged) > 8 * max_props THEN
        SELECT count(*) INTO n FROM jsonb_object_keys(merged);
        IF n > max_props THEN
            PERFORM profilestore_warn(project, kind, entity, operation, k,
                format('the profile would have %s properties, over the limit of %s', n, max_props));
            RETURN NULL;
        END IF;
    END IF;
    RETURN merged;
END
$$;

-- profilestore_fold: apply one profile's ordered updates to its stored state.  `kind` is 'profile' or
-- 'group' and `entity` the distinct_id (or "group_key/group_id"), both only for warnings.
CREATE FUNCTION profilestore_fold(
    project bigint, kind text, entity text,
    INOUT exists_ boolean, INOUT props jsonb, INOUT times jsonb, INOUT max_time double precision,
    INOUT last_seen double precision, INOUT del_t double precision, INOUT del_until double precision,
    updates jsonb, now_t double precision, tomb_secs double precision, max_props integer, max_bytes integer
) LANGUAGE plpgsql AS $fold$
DECLARE
    u jsonb;
    t double precision;
    k text;
    v jsonb;
    cur jsonb;
    elem jsonb;
    kt jsonb;
    merged jsonb;
BEGIN
    -- An expired deletion no longer drops stale updates.
    IF del_until IS NOT NULL AND del_until <= now_t THEN
        del_t := NULL; del_until := NULL;
    END IF;
    exists_ := coalesce(exists_, false);
    IF NOT exists_ THEN
        props := '{}'; times := '{}'; last_seen := NULL; max_time := del_t;
    END IF;

    FOR u IN SELECT value FROM jsonb_array_elements(updates) LOOP
        t := (u->>'t')::double precision;

        IF u ? 'del' THEN
            -- Deletion always works, whatever the property times, and leaves a profile tombstone.
            exists_ := false; props := '{}'; times := '{}'; last_seen := NULL;
            del_t := greatest(del_t, t);
            del_until := now_t + tomb_secs;
            max_time := del_t;
            CONTINUE;
        END IF;
        IF del_t IS NOT NULL AND t < del_t THEN
            CONTINUE;  -- older than the newest deletion: dropped
        END IF;
        IF NOT exists_ THEN
            -- $remove and $unset never create a profile; every other operation does.
            CONTINUE WHEN NOT (u ? 'set' OR u ? 'once' OR u ? 'add' OR u ? 'union' OR u ? 'append');
            exists_ := true; props := '{}'; times := '{}';
        END IF;

        FOR k, v IN SELECT key, value FROM jsonb_each(u->'set') LOOP
            kt := times->k;
            IF kt IS NULL OR t >= profilestore_time(kt) THEN
                merged := profilestore_put(props, k, v, max_props, max_bytes, project, kind, entity, '$set');
                IF merged IS NOT NULL THEN
                    props := merged;
                    times := times || jsonb_build_object(k, t);
                END IF;
            END IF;
        END LOOP;

        FOR k, v IN SELECT key, value FROM jsonb_each(u->'once') LOOP
            kt := times->k;
            -- Absent (and not unset later than T), or holding a $set_once value of a later T.
            IF (NOT props ? k AND (kt IS NULL OR t >= profilestore_time(kt)))
               OR (props ? k AND kt->>1 = 'o' AND t < profilestore_time(kt)) THEN
                merged := profilestore_put(props, k, v, max_props, max_bytes, project, kind, entity, '$set_once');
                IF merged IS NOT NULL THEN
                    props := merged;
                    times := times || jsonb_build_object(k, jsonb_build_array(t, 'o'));
                END IF;
            END IF;
        END LOOP;

        FOR k, v IN SELECT key, value FROM jsonb_each(u->'add') LOOP
            cur := props->k;
            IF cur IS NOT NULL AND jsonb_typeof(cur) <> 'number' THEN
                PERFORM profilestore_warn(project, kind, entity, '$add', k,
                                          'the stored value is a ' || jsonb_typeof(cur) || ', not a number');
                CONTINUE;
            END IF;
            IF cur IS NOT NULL THEN
                v := to_jsonb(cur::text::numeric + v::text::numeric);
            END IF;
            props := coalesce(profilestore_put(props, k, v, max_props, max_bytes, project, kind, entity, '$add'),
                              props);
        END LOOP;

        FOR k, v IN SELECT key, value FROM jsonb_each(u->'union') LOOP
            cur := coalesce(props->k, '[]');
            IF jsonb_typeof(cur) <> 'array' THEN
                PERFORM profilestore_warn(project, kind, entity, '$union', k,
                                          'the stored value is a ' || jsonb_typeof(cur) || ', not a list');
                CONTINUE;
            END IF;
            FOR elem IN SELECT value FROM jsonb_array_elements(v) LOOP
                IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(cur) AS c(x) WHERE c.x = elem) THEN
                    cur := cur || jsonb_build_array(elem);
                END IF;
            END LOOP;
            props := coalesce(profilestore_put(props, k, cur, max_props, max_bytes, project, kind, entity,
                                               '$union'), props);
        END LOOP;

        FOR k, v IN SELECT key, value FROM jsonb_each(u->'append') LOOP
            cur := coalesce(props->k, '[]');
            IF jsonb_typeof(cur) <> 'array' THEN
                PERFORM profilestore_warn(project, kind, entity, '$append', k,
                                          'the stored value is a ' || jsonb_typeof(cur) || ', not a list');
                CONTINUE;
            END IF;
            props := coalesce(profilestore_put(props, k, cur || jsonb_build_array(v), max_props, max_bytes,
                                               project, kind, entity, '$append'), props);
        END LOOP;

        FOR k, v IN SELECT key, value FROM jsonb_each(u->'remove') LOOP
            cur := props->k;
            CONTINUE WHEN cur IS NULL;
            IF jsonb_typeof(cur) <> 'array' THEN
                PERFORM profilestore_warn(project, kind, entity, '$remove', k,
                                          'the stored value is a ' || jsonb_typeof(cur) || ', not a list');
                CONTINUE;
            END IF;
            props := props || jsonb_build_object(k, coalesce(
                (SELECT jsonb_agg(c.x ORDER BY c.i)
                 FROM jsonb_array_elements(cur) WITH ORDINALITY AS c(x, i) WHERE c.x <> v), '[]'));
        END LOOP;

        FOR k IN SELECT value FROM jsonb_array_elements_text(u->'unset') LOOP
            kt := times->k;
            IF kt IS NULL OR t >= profilestore_time(kt) THEN
                props := props - k;
                times := times || jsonb_build_object(k, jsonb_build_array(t, 'u'));
            END IF;
        END LOOP;

        max_time := greatest(max_time, t);
        IF NOT u ? 'it' THEN
            last_seen := greatest(last_seen, t);
        END IF;
    END LOOP;
END
$fold$;
