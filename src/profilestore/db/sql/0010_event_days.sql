-- The daily rollup of events (revision 0010): `event_days` holds one row per (project, UTC day, event name,
-- distinct_id) with the number of events, kept exact by statement-level triggers on `events`, so every
-- writer keeps it (the /track and /import statement, a bulk load by SQL, an analyst's DELETE) and the counts
-- always equal the events table's.
--
-- * Insert: the transition table holds only the rows actually inserted; a retried event that ON CONFLICT
--   turns into an update of the stored one is an UPDATE (below), whose key is unchanged: it counts once.
-- * Update: the old rows' counts go down and the new rows' go up, netted per key first, so an update that
--   keeps (event, distinct_id, day) writes nothing to the rollup.
-- * Delete: the counts go down; rows that reach zero are removed.
-- * Locks: every statement takes its rollup rows in key order (ORDER BY), so concurrent writers about the
--   same (day, event, user) wait for each other instead of deadlocking; a trigger fires at the end of the
--   statement, after its events and users_seen rows, the same order for every writer.
-- Dropping or detaching a partition of `events` fires no trigger: delete the same days from `event_days`
-- (README, "The tables").
CREATE FUNCTION profilestore_event_days_insert() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO event_days AS r (project_id, day, event, distinct_id, events)
    SELECT n.project_id, (n.time AT TIME ZONE 'UTC')::date, n.event, n.distinct_id, count(*)
    FROM new_events AS n
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (project_id, day, event, distinct_id) DO UPDATE SET events = r.events + excluded.events;
    RETURN NULL;
END
$$;

CREATE FUNCTION profilestore_event_days_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    changed bigint;
BEGIN
    INSERT INTO event_days AS r (project_id, day, event, distinct_id, events)
    SELECT k.p, k.d, k.e, k.u, sum(k.n)
    FROM (
        SELECT n.project_id AS p, (n.time AT TIME ZONE 'UTC')::date AS d, n.event AS e, n.distinct_id AS u,
               1 AS n
        FROM new_events AS n
        UNION ALL
        SELECT o.project_id, (o.time AT TIME ZONE 'UTC')::date, o.event, o.distinct_id, -1
        FROM old_events AS o
    ) AS k
    GROUP BY 1, 2, 3, 4
    HAVING sum(k.n) <> 0
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (project_id, day, event, distinct_id) DO UPDATE SET events = r.events + excluded.events;
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed > 0 THEN
        DELETE FROM event_days AS r
        USING (SELECT DISTINCT project_id, (time AT TIME ZONE 'UTC')::date AS day, event, distinct_id
               FROM old_events) AS o
        WHERE r.project_id = o.project_id AND r.day = o.day AND r.event = o.event
          AND r.distinct_id = o.distinct_id AND r.events <= 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION profilestore_event_days_delete() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO event_days AS r (project_id, day, event, distinct_id, events)
    SELECT o.project_id, (o.time AT TIME ZONE 'UTC')::date, o.event, o.distinct_id, -count(*)
    FROM old_events AS o
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (project_id, day, event, distinct_id) DO UPDATE SET events = r.events + excluded.events;
    DELETE FROM event_days AS r
    USING (SELECT DISTINCT project_id, (time AT TIME ZONE 'UTC')::date AS day, event, distinct_id
           FROM old_events) AS o
    WHERE r.project_id = o.project_id AND r.day = o.day AND r.event = o.event
      AND r.distinct_id = o.distinct_id AND r.events <= 0;
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
