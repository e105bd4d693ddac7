-- The daily rollup of events (revision 0010): `event_days` holds one row per (project, UTC day, event, user)
-- with the number of events, keyed by integers from two per-project dictionaries (`event_names`,
-- `event_users`; the user '' of events without one is always user 0).  Statement-level triggers on `events`
-- keep all three exact for every writer (the /track and /import statement, a bulk load by SQL, an analyst's
-- UPDATE or DELETE), so the rollup's counts always equal the events table's.
--
-- * Insert: the transition table holds only the rows actually inserted; a retried event that ON CONFLICT
--   turns into an update of the stored one is an UPDATE (below), whose key is unchanged: it counts once.
-- * Update: the old rows' counts go down and the new rows' go up, netted per key first, so an update that
--   keeps (event, distinct_id, day) writes nothing to the rollup.
-- * Delete: the counts go down; rows that reach zero are removed (dictionary entries stay).
-- * Dictionaries: only names and ids not yet known are inserted (so the identity sequences are not spent on
--   known ones); two writers adding the same new one at once meet in ON CONFLICT DO NOTHING, and the later
--   one reads the earlier one's row once it has committed (each statement of a function takes a new
--   snapshot in READ COMMITTED, the isolation of every writer of the service).
-- * Plans: PL/pgSQL keeps a statement's first plan for the session, made when the dictionaries may still
--   be small; a sequential scan of one inside a nested loop would then cost a whole table per event once
--   they are big (seen: a 500,000-event insert stalled for minutes).  The functions run with
--   `enable_seqscan = off`, so every lookup is an index probe, whatever the sizes were at planning time.
-- * Locks: every statement takes its rows in key order (ORDER BY), so concurrent writers about the same
--   (day, event, user) wait for each other instead of deadlocking; the triggers fire at the end of the
--   statement, after its events and users_seen rows, the same order for every writer.
-- Dropping or detaching a partition of `events` fires no trigger: delete the same days from `event_days`
-- (README, "The tables").
CREATE FUNCTION profilestore_event_days_add(changes jsonb) RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
-- `changes`: [{p: project, d: day, e: event name, u: distinct_id, n: signed count}], one per key, none 0.
BEGIN
    INSERT INTO event_names (project_id, name)
    SELECT DISTINCT c.p, c.e
    FROM jsonb_to_recordset(changes) AS c(p bigint, e text)
    WHERE NOT EXISTS (SELECT FROM event_names AS k WHERE k.project_id = c.p AND k.name = c.e)
    ORDER BY 1, 2
    ON CONFLICT (project_id, name) DO NOTHING;
    INSERT INTO event_users (project_id, distinct_id)
    SELECT DISTINCT c.p, c.u
    FROM jsonb_to_recordset(changes) AS c(p bigint, u text)
    WHERE c.u <> '' AND NOT EXISTS (SELECT FROM event_users AS k WHERE k.project_id = c.p AND k.distinct_id = c.u)
    ORDER BY 1, 2
    ON CONFLICT (project_id, distinct_id) DO NOTHING;
    INSERT INTO event_days AS r (project_id, day, event_id, user_id, events)
    SELECT c.p, c.d, k.id, coalesce(u.id, 0), c.n
    FROM jsonb_to_recordset(changes) AS c(p bigint, d date, e text, u text, n bigint)
    JOIN event_names AS k ON k.project_id = c.p AND k.name = c.e
    LEFT JOIN event_users AS u ON u.project_id = c.p AND u.distinct_id = c.u AND c.u <> ''
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (project_id, day, event_id, user_id) DO UPDATE SET events = r.events + excluded.events;
    DELETE FROM event_days AS r
    USING jsonb_to_recordset(changes) AS c(p bigint, d date, e text, u text, n bigint)
    JOIN event_names AS k ON k.project_id = c.p AND k.name = c.e
    LEFT JOIN event_users AS u ON u.project_id = c.p AND u.distinct_id = c.u AND c.u <> ''
    WHERE c.n < 0 AND r.project_id = c.p AND r.day = c.d AND r.event_id = k.id
      AND r.user_id = coalesce(u.id, 0) AND r.events <= 0;
END
$$;

-- The hot path (every /track and /import statement): straight from the transition table, no detour.
CREATE FUNCTION profilestore_event_days_insert() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    INSERT INTO event_names (project_id, name)
    SELECT DISTINCT n.project_id, n.event
    FROM new_events AS n
    WHERE NOT EXISTS (SELECT FROM event_names AS k WHERE k.project_id = n.project_id AND k.name = n.event)
    ORDER BY 1, 2
    ON CONFLICT (project_id, name) DO NOTHING;
    INSERT INTO event_users (project_id, distinct_id)
    SELECT DISTINCT n.project_id, n.distinct_id
    FROM new_events AS n
    WHERE n.distinct_id <> '' AND NOT EXISTS (
        SELECT FROM event_users AS k WHERE k.project_id = n.project_id AND k.distinct_id = n.distinct_id)
    ORDER BY 1, 2
    ON CONFLICT (project_id, distinct_id) DO NOTHING;
    INSERT INTO event_days AS r (project_id, day, event_id, user_id, events)
    SELECT n.project_id, (n.time AT TIME ZONE 'UTC')::date, k.id, coalesce(u.id, 0), count(*)
    FROM new_events AS n
    JOIN event_names AS k ON k.project_id = n.project_id AND k.name = n.event
    LEFT JOIN event_users AS u
        ON u.project_id = n.project_id AND u.distinct_id = n.distinct_id AND n.distinct_id <> ''
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (project_id, day, event_id, user_id) DO UPDATE SET events = r.events + excluded.events;
    RETURN NULL;
END
$$;

CREATE FUNCTION profilestore_event_days_update() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    changes jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('p', k.p, 'd', k.d, 'e', k.e, 'u', k.u, 'n', k.n))
    INTO changes
    FROM (
        SELECT p, d, e, u, sum(n) AS n
        FROM (
            SELECT n.project_id AS p, (n.time AT TIME ZONE 'UTC')::date AS d, n.event AS e,
                   n.distinct_id AS u, 1 AS n
            FROM new_events AS n
            UNION ALL
            SELECT o.project_id, (o.time AT TIME ZONE 'UTC')::date, o.event, o.distinct_id, -1
            FROM old_events AS o
        ) AS both_sides
        GROUP BY p, d, e, u
        HAVING sum(n) <> 0
    ) AS k;
    IF changes IS NOT NULL THEN
        PERFORM profilestore_event_days_add(changes);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION profilestore_event_days_delete() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    changes jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('p', k.p, 'd', k.d, 'e', k.e, 'u', k.u, 'n', -k.n))
    INTO changes
    FROM (
        SELECT o.project_id AS p, (o.time AT TIME ZONE 'UTC')::date AS d, o.event AS e,
               o.distinct_id AS u, count(*) AS n
        FROM old_events AS o
        GROUP BY 1, 2, 3, 4
    ) AS k;
    IF changes IS NOT NULL THEN
        PERFORM profilestore_event_days_add(changes);
    END IF;
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
