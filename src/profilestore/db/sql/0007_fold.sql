-- profilestore_fold: apply one profile's ordered updates to its stored state (ingest.md section 3).
-- Revision 0007; it replaces 0001_fold.sql, whose rules it keeps, with work that grows linearly:
--
-- * each operation of an update is applied to the profile as a whole: its entries are worked out against the
--   stored state, then merged into it with one concatenation (0001 concatenated once per property, so an
--   operation of k properties on a profile of p cost k * p);
-- * `$union` is set-based (0001 scanned the stored list once per value: 44,000 values took minutes): a few
--   scalar values are looked up by containment, in C; more are merged with the stored list by one sort;
-- * list operations count their elements against a budget per request (profilestore_list_work);
-- * a request records at most so many ingestion warnings per project, and one summary row counting the rest
--   (profilestore_warn);
-- * an `$add` whose result a double or a 64-bit integer cannot hold exactly is refused like any conflict
--   (profilestore_exact), as /engage refuses such a number sent directly;
-- * a profile keeps the times of at most 2 * max_props names: past that the oldest $unset tombstones go.
--
-- This is the general ("slow") path of the /engage write; the statement in ingest/profiles/sql.py takes a fast
-- path in plain SQL for the common case (one `$set` newer than everything stored) and calls this function for
-- everything else.  A migration owns this text: change it with a new revision, never in place.
--
-- State: exists, props (the properties), times ({name: T} for a $set, {name: [T, "o"]} for a $set_once,
-- {name: [T, "u"]} for an $unset tombstone; the common case is the smallest), max_time (greatest T in times
-- and of a deletion), last_seen (epoch seconds), del_t / del_until (newest $delete's T and, as epoch seconds,
-- when its tombstone expires).
-- Updates: [{"t": T, "it": true?, "set": {}, "once": {}, "add": {}, "union": {k: [..]}, "append": {},
--            "remove": {}, "unset": [..], "del": true?}] in arrival order, already validated by Python.
-- Conflicts with stored state are written to ingestion_warnings and leave that property as it was.
--
-- Request-wide state lives in transaction-local settings, so it ends with the request's transaction and goes
-- back with a rolled-back savepoint (the one-by-one path of ingest/profiles/sql.py):
--   profilestore.max_warnings, profilestore.max_list_work   the request's limits (set by the apply functions)
--   profilestore.warnings     {"<project_id>": [warnings so far, id of the summary row]}
--   profilestore.list_work    list elements handled so far

-- The time T of a `times` entry (see profilestore_fold).
CREATE FUNCTION profilestore_time(entry jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(entry) WHEN 'number' THEN entry::text::float8 ELSE (entry->>0)::float8 END
$$;

-- A request-wide setting as a number (NULL when this transaction has not set it).
CREATE FUNCTION profilestore_counter(name text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting(name, true), '')::bigint
$$;

-- Records a warning, unless the request has recorded profilestore.max_warnings of this project's already: the
-- first one past that writes the request's summary row, which profilestore_warnings_counted completes.
CREATE FUNCTION profilestore_warn(
    project bigint, kind text, entity text, operation text, property text, reason text
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    counts jsonb := coalesce(nullif(current_setting('profilestore.warnings', true), ''), '{}')::jsonb;
    entry jsonb := counts->(project::text);
    n bigint := coalesce((entry->>0)::bigint, 0) + 1;
    cap bigint := coalesce(profilestore_counter('profilestore.max_warnings'), 100);
    summary bigint := (entry->>1)::bigint;
BEGIN
    IF n <= cap THEN
        INSERT INTO ingestion_warnings (project_id, kind, entity, operation, property, reason)
        VALUES (project, kind, entity, operation, property, reason);
    ELSIF summary IS NULL THEN
        INSERT INTO ingestion_warnings (project_id, kind, entity, operation, property, reason)
        VALUES (project, kind, '', '', '', 'more warnings of this request were not recorded')
        RETURNING id INTO summary;
    END IF;
    PERFORM set_config('profilestore.warnings',
                       jsonb_set(counts, ARRAY[project::text], jsonb_build_array(n, summary))::text, true);
END
$$;

-- The request's summary rows, with the number of warnings each stands for (end of each apply call).
CREATE FUNCTION profilestore_warnings_counted() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cap bigint := coalesce(profilestore_counter('profilestore.max_warnings'), 100);
BEGIN
    UPDATE ingestion_warnings AS w
    SET reason = format('%s more warnings of this request were not recorded (at most %s are kept per request)',
                        (c.value->>0)::bigint - cap, cap)
    FROM jsonb_each(coalesce(nullif(current_setting('profilestore.warnings', true), ''), '{}')::jsonb) AS c
    WHERE w.id = (c.value->>1)::bigint;
END
$$;

-- Counts `elements` of list work against the request's budget (profilestore.max_list_work): false, and nothing
-- counted, when they would go over it.
CREATE FUNCTION profilestore_list_work(elements bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    done bigint := coalesce(profilestore_counter('profilestore.list_work'), 0) + elements;
BEGIN
    IF done > coalesce(profilestore_counter('profilestore.max_list_work'), 1000000) THEN
        RETURN false;
    END IF;
    PERFORM set_config('profilestore.list_work', done::text, true);
    RETURN true;
END
$$;

-- Whether a list operation may go on with `cur`, the stored value: a list, and `elements` of work within the
-- request's budget (profilestore_list_work); otherwise the conflict is recorded as a warning and it may not.
CREATE FUNCTION profilestore_list_ok(
    project bigint, kind text, entity text, operation text, property text, cur jsonb, elements bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(cur) <> 'array' THEN
        PERFORM profilestore_warn(project, kind, entity, operation, property,
                                  'the stored value is a ' || jsonb_typeof(cur) || ', not a list');
        RETURN false;
    END IF;
    IF NOT profilestore_list_work(jsonb_array_length(cur) + elements) THEN
        PERFORM profilestore_warn(project, kind, entity, operation, property, format(
            'the list operations of this request are over their budget of %s elements',
            profilestore_counter('profilestore.max_list_work')));
        RETURN false;
    END IF;
    RETURN true;
END
$$;

-- Whether /engage would store this number as sent (ingest/wire.py): an integer orjson reads as one (from
-- -2^63 to 2^64 - 1), or a number equal to the shortest decimal of a double (float8 output with
-- extra_float_digits >= 1 is that decimal).
CREATE FUNCTION profilestore_exact(n numeric) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET extra_float_digits = 1 AS $$
BEGIN
    IF scale(n) = 0 AND n BETWEEN -9223372036854775808 AND 18446744073709551615 OR n = 0 THEN
        RETURN true;
    END IF;
    IF abs(n) < 4.9406564584124654e-324 OR abs(n) > 1.7976931348623157e308 THEN
        RETURN false;  -- no double: it would be 0 or infinity
    END IF;
    RETURN n = n::float8::text::numeric;
END
$$;

-- A number in a warning: whole when short, else its first digits and its length.
CREATE FUNCTION profilestore_number_text(n numeric) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(n::text) <= 40 THEN n::text
                ELSE format('%s... (%s digits)', left(n::text, 20), length(n::text)) END
$$;

-- The values of `operand` (a list) that `stored` (a list) does not hold, each once, in operand order; values
-- are equal when JSON says so (1 = 1.0; objects by content), as jsonb equality does.
CREATE FUNCTION profilestore_union_added(stored jsonb, operand jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    x jsonb;
    added jsonb := '[]';
BEGIN
    -- A few scalars: each looked up by containment, a scan in C (for a scalar, `list @> [x]` is "some element
    -- of the list equals x"; for a list or object it is not equality, so those take the general way).
    IF jsonb_array_length(operand) <= 32
       AND NOT jsonb_path_exists(operand, 'strict $[*] ? (@.type() == "array" || @.type() == "object")') THEN
        FOR x IN SELECT value FROM jsonb_array_elements(operand) LOOP
            IF NOT (stored @> jsonb_build_array(x) OR added @> jsonb_build_array(x)) THEN
                added := added || jsonb_build_array(x);
            END IF;
        END LOOP;
        RETURN added;
    END IF;
    -- In general: one sort of both lists by value; of each value the first occurrence stays (a stored one
    -- before any new one), and the new values kept go out in operand order.
    RETURN coalesce((
        SELECT jsonb_agg(d.x ORDER BY d.i) FROM (
            SELECT DISTINCT ON (e.x) e.x, e.i FROM (
                SELECT s.x, 0::bigint AS i FROM jsonb_array_elements(stored) AS s(x)
                UNION ALL
                SELECT o.x, o.i FROM jsonb_array_elements(operand) WITH ORDINALITY AS o(x, i)
            ) AS e
            ORDER BY e.x, e.i
        ) AS d
        WHERE d.i > 0), '[]');
END
$$;

-- `stored` (a list) without its elements equal to `value`, in their order.
CREATE FUNCTION profilestore_list_without(stored jsonb, value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    kind text := jsonb_typeof(value);
BEGIN
    IF kind NOT IN ('array', 'object') THEN
        IF NOT stored @> jsonb_build_array(value) THEN
            RETURN stored;  -- not there (a scan in C)
        END IF;
        IF kind = 'string' THEN
            RETURN stored - (value #>> '{}');  -- jsonb's own removal of string elements
        END IF;
        -- A number, boolean or null: the elements of another type, or not equal to it (in C).
        RETURN jsonb_path_query_array(stored, 'strict $[*] ? (@.type() != $t || @ != $v)',
                                      jsonb_build_object('t', kind, 'v', value));
    END IF;
    RETURN coalesce((SELECT jsonb_agg(s.x ORDER BY s.i)
                     FROM jsonb_array_elements(stored) WITH ORDINALITY AS s(x, i) WHERE s.x <> value), '[]');
END
$$;

-- Bytes a value takes inside an object besides its two 4-byte entries, alignment aside: inside a fresh
-- one-element array, after 4 bytes of varlena header, 4 of array header and 4 of entry, it starts aligned, as
-- it does in an object after its padding.  (Not pg_column_size(v) itself: a value read from a row may have a
-- 1-byte header.)
CREATE FUNCTION profilestore_value_bytes(v jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_column_size(jsonb_build_array(v)) - 12
$$;

-- Sets the entries of `entries` (an object) on `props` as far as the profile limits allow.  Within the limits
-- (the usual case) all of them, in one concatenation.  Otherwise each in turn (key order), refused with a
-- warning when it would go over: the property count exactly, the bytes by a bound that never falls short,
-- so the profile never goes over the byte limit and a value near it may be refused a few bytes early.
-- Returns the new properties and the entries set.
CREATE FUNCTION profilestore_put(
    props jsonb, entries jsonb, max_props integer, max_bytes integer,
    project bigint, kind text, entity text, operation text,
    OUT merged jsonb, OUT applied jsonb
) LANGUAGE plpgsql AS $$
DECLARE
    size_ integer;
    n bigint;
    aligned bigint;
    bound bigint;
    k text;
    v jsonb;
    old jsonb;
    grow bigint;
    keys text[] := '{}';
    vals jsonb[] := '{}';
BEGIN
    merged := props || entries;
    size_ := pg_column_size(merged);
    -- Each pair costs at least 8 bytes of JSONB header, so a small object cannot hold too many keys; and
    -- entries that all replace properties add none.
    IF size_ <= max_bytes
       AND (size_ <= 8 * max_props
            OR NOT EXISTS (SELECT FROM jsonb_object_keys(entries) AS e(k) WHERE NOT props ? e.k)
            OR (SELECT count(*) FROM jsonb_object_keys(merged)) <= max_props) THEN
        applied := entries;
        RETURN;
    END IF;
    -- An object's size is its header, 8 bytes of entries per pair, the keys, the values' bytes, and up to 3
    -- bytes of alignment before each number, list and object: `bound` counts those 3 bytes always.
    SELECT count(*), count(*) FILTER (WHERE jsonb_typeof(e.value) IN ('number', 'array', 'object'))
    INTO n, aligned FROM jsonb_each(props) AS e;
    bound := pg_column_size(props || '{}') + 3 * aligned;  -- a 4-byte header, as `merged` has
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(entries) AS e LOOP
        old := props->k;
        IF old IS NULL AND n >= max_props THEN
            PERFORM profilestore_warn(project, kind, entity, operation, k,
                format('the profile would have %s properties, over the limit of %s', n + 1, max_props));
            CONTINUE;
        END IF;
        grow := profilestore_value_bytes(v) + CASE WHEN jsonb_typeof(v) IN ('number', 'array', 'object')
                                                     THEN 3 ELSE 0 END;
        IF old IS NULL THEN
            grow := grow + 8 + octet_length(k);
        ELSE
            grow := grow - profilestore_value_bytes(old);
        END IF;
        IF bound + grow > max_bytes THEN
            PERFORM profilestore_warn(project, kind, entity, operation, k,
                format('the profile would be over the limit of %s bytes', max_bytes));
            CONTINUE;
        END IF;
        bound := bound + grow;
        n := n + CASE WHEN old IS NULL THEN 1 ELSE 0 END;
        keys := array_append(keys, k);
        vals := array_append(vals, v);
    END LOOP;
    applied := coalesce((SELECT jsonb_object_agg(a.k, a.v) FROM unnest(keys, vals) AS a(k, v)), '{}');
    merged := props || applied;
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
    added jsonb;
    entries jsonb;
    total numeric;
    keys text[];
    vals jsonb[];
    n_times bigint;  -- names in times, once counted (NULL: not yet)
BEGIN
    -- An expired deletion no longer drops stale updates.
    IF del_until IS NOT NULL AND del_until <= now_t THEN
        del_t := NULL; del_until := NULL;
    END IF;
    exists_ := coalesce(exists_, false);
    IF NOT exists_ THEN
        props := '{}'; times := '{}'; last_seen := NULL; max_time := del_t; n_times := 0;
    ELSE
        -- Concatenating an empty object hands back the value decompressed: read once, not at every lookup.
        props := props || '{}';
        times := times || '{}';
    END IF;

    FOR u IN SELECT value FROM jsonb_array_elements(updates) LOOP
        t := (u->>'t')::double precision;

        IF u ? 'del' THEN
            -- Deletion always works, whatever the property times, and leaves a profile tombstone.
            exists_ := false; props := '{}'; times := '{}'; last_seen := NULL; n_times := 0;
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
            exists_ := true; props := '{}'; times := '{}'; n_times := 0;
        END IF;

        -- $set k at T applies if T >= time(k).
        IF u ? 'set' THEN
            SELECT jsonb_object_agg(e.key, e.value) INTO entries FROM jsonb_each(u->'set') AS e
            WHERE times->e.key IS NULL OR t >= profilestore_time(times->e.key);
            IF entries IS NOT NULL THEN
                SELECT p.merged, p.applied INTO props, entries
                FROM profilestore_put(props, entries, max_props, max_bytes, project, kind, entity, '$set') AS p;
                IF n_times IS NOT NULL THEN
                    n_times := n_times + (SELECT count(*) FROM jsonb_object_keys(entries) AS a(k) WHERE NOT times ? a.k);
                END IF;
                times := times || coalesce((SELECT jsonb_object_agg(a.k, t) FROM jsonb_object_keys(entries) AS a(k)),
                                           '{}');
            END IF;
        END IF;

        -- $set_once k at T: absent (and not unset later than T), or holding a $set_once value of a later T.
        IF u ? 'once' THEN
            SELECT jsonb_object_agg(e.key, e.value) INTO entries FROM jsonb_each(u->'once') AS e
            WHERE (NOT props ? e.key AND (times->e.key IS NULL OR t >= profilestore_time(times->e.key)))
               OR (props ? e.key AND times->e.key->>1 = 'o' AND t < profilestore_time(times->e.key));
            IF entries IS NOT NULL THEN
                SELECT p.merged, p.applied INTO props, entries
                FROM profilestore_put(props, entries, max_props, max_bytes, project, kind, entity, '$set_once') AS p;
                IF n_times IS NOT NULL THEN
                    n_times := n_times + (SELECT count(*) FROM jsonb_object_keys(entries) AS a(k) WHERE NOT times ? a.k);
                END IF;
                times := times || coalesce((SELECT jsonb_object_agg(a.k, jsonb_build_array(t, 'o'))
                                            FROM jsonb_object_keys(entries) AS a(k)), '{}');
            END IF;
        END IF;

        IF u ? 'add' THEN
            keys := '{}'; vals := '{}';
            FOR k, v IN SELECT e.key, e.value FROM jsonb_each(u->'add') AS e LOOP
                cur := props->k;
                IF cur IS NOT NULL THEN
                    IF jsonb_typeof(cur) <> 'number' THEN
                        PERFORM profilestore_warn(project, kind, entity, '$add', k,
                                                  'the stored value is a ' || jsonb_typeof(cur) || ', not a number');
                        CONTINUE;
                    END IF;
                    total := cur::numeric + v::numeric;
                    IF NOT profilestore_exact(total) THEN
                        PERFORM profilestore_warn(project, kind, entity, '$add', k,
                            format('the sum %s cannot be stored exactly: neither a double nor a 64-bit integer holds it',
                                   profilestore_number_text(total)));
                        CONTINUE;
                    END IF;
                    v := to_jsonb(total);
                END IF;
                keys := array_append(keys, k);
                vals := array_append(vals, v);
            END LOOP;
            IF cardinality(keys) > 0 THEN
                SELECT p.merged INTO props FROM profilestore_put(
                    props, (SELECT jsonb_object_agg(a.k, a.v) FROM unnest(keys, vals) AS a(k, v)),
                    max_props, max_bytes, project, kind, entity, '$add') AS p;
            END IF;
        END IF;

        IF u ? 'union' THEN
            keys := '{}'; vals := '{}';
            FOR k, v IN SELECT e.key, e.value FROM jsonb_each(u->'union') AS e LOOP
                cur := coalesce(props->k, '[]');
                CONTINUE WHEN NOT profilestore_list_ok(project, kind, entity, '$union', k, cur, jsonb_array_length(v));
                added := profilestore_union_added(cur, v);
                CONTINUE WHEN added = '[]' AND props ? k;  -- nothing new
                keys := array_append(keys, k);
                vals := array_append(vals, cur || added);
            END LOOP;
            IF cardinality(keys) > 0 THEN
                SELECT p.merged INTO props FROM profilestore_put(
                    props, (SELECT jsonb_object_agg(a.k, a.v) FROM unnest(keys, vals) AS a(k, v)),
                    max_props, max_bytes, project, kind, entity, '$union') AS p;
            END IF;
        END IF;

        IF u ? 'append' THEN
            keys := '{}'; vals := '{}';
            FOR k, v IN SELECT e.key, e.value FROM jsonb_each(u->'append') AS e LOOP
                cur := coalesce(props->k, '[]');
                CONTINUE WHEN NOT profilestore_list_ok(project, kind, entity, '$append', k, cur, 1);
                keys := array_append(keys, k);
                vals := array_append(vals, cur || jsonb_build_array(v));
            END LOOP;
            IF cardinality(keys) > 0 THEN
                SELECT p.merged INTO props FROM profilestore_put(
                    props, (SELECT jsonb_object_agg(a.k, a.v) FROM unnest(keys, vals) AS a(k, v)),
                    max_props, max_bytes, project, kind, entity, '$append') AS p;
            END IF;
        END IF;

        IF u ? 'remove' THEN
            keys := '{}'; vals := '{}';
            FOR k, v IN SELECT e.key, e.value FROM jsonb_each(u->'remove') AS e LOOP
                cur := props->k;
                CONTINUE WHEN cur IS NULL;
                CONTINUE WHEN NOT profilestore_list_ok(project, kind, entity, '$remove', k, cur, 1);
                v := profilestore_list_without(cur, v);
                CONTINUE WHEN jsonb_array_length(v) = jsonb_array_length(cur);  -- nothing removed
                keys := array_append(keys, k);
                vals := array_append(vals, v);
            END LOOP;
            -- A shorter list never breaks a limit.
            IF cardinality(keys) > 0 THEN
                props := props || (SELECT jsonb_object_agg(a.k, a.v) FROM unnest(keys, vals) AS a(k, v));
            END IF;
        END IF;

        -- $unset k at T applies if T >= time(k), and records time(k) = T.
        IF u ? 'unset' THEN
            SELECT array_agg(e.k) INTO keys FROM jsonb_array_elements_text(u->'unset') AS e(k)
            WHERE times->e.k IS NULL OR t >= profilestore_time(times->e.k);
            IF keys IS NOT NULL THEN
                -- Only the names it has (`jsonb - text[]` compares every key with every name given).
                props := props - ARRAY(SELECT a.k FROM unnest(keys) AS a(k) WHERE props ? a.k);
                IF n_times IS NOT NULL THEN
                    n_times := n_times + (SELECT count(DISTINCT a.k) FROM unnest(keys) AS a(k) WHERE NOT times ? a.k);
                END IF;
                times := times || (SELECT jsonb_object_agg(a.k, jsonb_build_array(t, 'u')) FROM unnest(keys) AS a(k));
            END IF;
        END IF;

        -- The times of at most 2 * max_props names: past that, the $unset tombstones of the oldest T go, down
        -- to 1.5 * max_props names, so that unsetting ever new names cannot grow the times, and the work of
        -- every later update, without end (an update older than a forgotten $unset then applies).  Names are
        -- counted once (an entry takes at least 8 bytes: a smaller object has too few), then kept count of.
        IF n_times IS NULL AND pg_column_size(times) > 16 * max_props THEN
            n_times := (SELECT count(*) FROM jsonb_object_keys(times));
        END IF;
        IF n_times > 2 * max_props THEN
            SELECT jsonb_object_agg(o.key, o.value), count(*) INTO times, n_times FROM (
                SELECT e.key, e.value, coalesce(e.value->>1 = 'u', false) AS tombstone,
                       row_number() OVER (PARTITION BY coalesce(e.value->>1 = 'u', false)
                                          ORDER BY (e.value->>0)::float8 DESC, e.key DESC) AS newest,
                       count(*) FILTER (WHERE coalesce(e.value->>1 = 'u', false) IS NOT TRUE) OVER () AS others
                FROM jsonb_each(times) AS e
            ) AS o
            WHERE NOT o.tombstone OR o.newest <= max_props * 3 / 2 - o.others;
        END IF;

        max_time := greatest(max_time, t);
        IF NOT u ? 'it' THEN
            last_seen := greatest(last_seen, t);
        END IF;
    END LOOP;
END
$fold$;
