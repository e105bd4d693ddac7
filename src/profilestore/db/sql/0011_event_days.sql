-- The daily rollup of events (revision 0011): `event_days` holds one row per (project, UTC day, event, user)
-- with the number of events, keyed by integers from two per-project dictionaries (`event_names`,
-- `event_users`; the user '' of events without one is always user 0).  It is kept exact for every writer
-- (the /track and /import statement, a bulk load by SQL, an analyst's UPDATE or DELETE) in two steps:
--
-- 1. On the write path, statement-level triggers on `events` only APPEND the changes, netted per key, to
--    `event_days_pending` (no index, no key, no row lock: writers never wait for each other there).
--    Measured before this design (the triggers upserting `event_days` and the dictionaries directly):
--    /track 14,017 -> 8,120 events/s and retry-heavy /import 26,400 -> 2,533 events/s, from row-lock waits
--    on the hot rollup rows of the day.
--    * Insert: the transition table holds only the rows actually inserted; a retried event that ON CONFLICT
--      turns into an update of the stored one is an UPDATE (below), whose key is unchanged: nothing pending.
--    * Update: the old rows' counts go down and the new rows' go up, netted per key first.
--    * Delete: the counts go down.
-- 2. `profilestore_event_days_compact()` moves everything pending into `event_days` in one transaction:
--    DELETE ... RETURNING takes exactly the committed pending rows (a row committed meanwhile stays for the
--    next round), so each change is folded in once.  One compaction at a time (a transaction-level advisory
--    lock); it takes the rollup's row locks in key order.  The app runs it every second in the background,
--    and the events query runs it before reading, so an answer includes every event acknowledged before the
--    question was asked.  On a hot standby it does nothing (the primary's compactions replicate).
--
-- * Dictionaries: only names and ids not yet known are inserted (so the identity sequences are not spent on
--   known ones), in key order.
-- * Plans: the compaction's statements are EXECUTEd, so each is planned with the sizes of the moment (a
--   plan cached while the dictionaries were small would scan a whole table per row once they are big).
-- Dropping or detaching a partition of `events` fires no trigger: delete the same days from `event_days`
-- (docs/operations.md, "The tables").

CREATE FUNCTION profilestore_event_days_compact() RETURNS bigint
LANGUAGE plpgsql
AS $$
-- Returns the number of (project, day, event, user) changes folded in.
DECLARE
    moved bigint;
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(7370911232873537);  -- 'event_days' compaction: one at a time
    IF to_regclass('pg_temp.event_days_moving') IS NULL THEN
        CREATE TEMP TABLE event_days_moving (
            project_id bigint, day date, event text, distinct_id text, events bigint
        ) ON COMMIT DELETE ROWS;
    END IF;
    WITH taken AS (DELETE FROM event_days_pending RETURNING *)
    INSERT INTO pg_temp.event_days_moving
    SELECT project_id, day, event, distinct_id, sum(events) FROM taken
    GROUP BY 1, 2, 3, 4 HAVING sum(events) <> 0;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved = 0 THEN
        RETURN 0;
    END IF;
    IF moved > 1000 THEN
        ANALYZE pg_temp.event_days_moving;
    END IF;
    EXECUTE $q$
        INSERT INTO event_names (project_id, name)
        SELECT DISTINCT c.project_id, c.event FROM pg_temp.event_days_moving AS c
        WHERE NOT EXISTS (SELECT FROM event_names AS k WHERE k.project_id = c.project_id AND k.name = c.event)
        ORDER BY 1, 2
        ON CONFLICT (project_id, name) DO NOTHING $q$;
    EXECUTE $q$
        INSERT INTO event_users (project_id, distinct_id)
        SELECT DISTINCT c.project_id, c.distinct_id FROM pg_temp.event_days_moving AS c
        WHERE c.distinct_id <> '' AND NOT EXISTS (
            SELECT FROM event_users AS k WHERE k.project_id = c.project_id AND k.distinct_id = c.distinct_id)
        ORDER BY 1, 2
        ON CONFLICT (project_id, distinct_id) DO NOTHING $q$;
    EXECUTE $q$
        INSERT INTO event_days AS r (project_id, day, event_id, user_id, events)
        SELECT c.project_id, c.day, k.id, coalesce(u.id, 0), c.events
        FROM pg_temp.event_days_moving AS c
        JOIN event_names AS k ON k.project_id = c.project_id AND k.name = c.event
        LEFT JOIN event_users AS u
            ON u.project_id = c.project_id AND u.distinct_id = c.distinct_id AND c.distinct_id <> ''
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (project_id, day, event_id, user_id) DO UPDATE SET events = r.events + excluded.events $q$;
    EXECUTE $q$
        DELETE FROM event_days AS r
        USING pg_temp.event_days_moving AS c
        JOIN event_names AS k ON k.project_id = c.project_id AND k.name = c.event
        LEFT JOIN event_users AS u
            ON u.project_id = c.project_id AND u.distinct_id = c.distinct_id AND c.distinct_id <> ''
        WHERE c.events < 0 AND r.project_id = c.project_id AND r.day = c.day AND r.event_id = k.id
          AND r.user_id = coalesce(u.id, 0) AND r.events <= 0 $q$;
    RETURN moved;
END
$$;

-- The hot path (every /track and /import statement): an append of the statement's keys, nothing else.
CREATE FUNCTION profilestore_event_days_insert() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO event_days_pending (project_id, day, event, distinct_id, events)
    SELECT n.project_id, (n.time AT TIME ZONE 'UTC')::date, n.event, n.distinct_id, count(*)
    FROM new_events AS n
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$;

CREATE FUNCTION profilestore_event_days_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO event_days_pending (project_id, day, event, distinct_id, events)
    SELECT p, d, e, u, sum(n)
    FROM (
        SELECT n.project_id AS p, (n.time AT TIME ZONE 'UTC')::date AS d, n.event AS e,
               n.distinct_id AS u, 1 AS n
        FROM new_events AS n
        UNION ALL
        SELECT o.project_id, (o.time AT TIME ZONE 'UTC')::date, o.event, o.distinct_id, -1
        FROM old_events AS o
    ) AS both_sides
    GROUP BY p, d, e, u
    HAVING sum(n) <> 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION profilestore_event_days_delete() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO event_days_pending (project_id, day, event, distinct_id, events)
    SELECT o.project_id, (o.time AT TIME ZONE 'UTC')::date, o.event, o.distinct_id, -count(*)
    FROM old_events AS o
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$;

CREATE TRIGGER event_days_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION profilestore_event_days_insert();
CREATE TRIGGER event_days_update AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION profilestore_event_days_update();
CREATE TRIGGER event_days_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION profilestore_event_days_delete();
