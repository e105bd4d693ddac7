-- Monthly partitions of `events` (revision 0003).  Called by the migration (the current month +-2) and by the
-- app, at start-up and daily, for the current month and the next 3 (app.py `_ensure_partitions`).
--
-- Months are calendar months in UTC: events_YYYY_MM holds [YYYY-MM-01 00:00 UTC, next month).  An event in a
-- month without a partition lands in events_default, so no valid event is ever refused.  A partition cannot
-- be created while events_default holds rows of its range (Postgres checks, and the check fails with
-- check_violation): such a month is skipped with a NOTICE and its events stay in the default partition.
-- That is why the app only creates partitions ahead of time, before any event of the month arrives.
-- Two processes creating the same partition at once: the loser gets duplicate_table (or a unique violation
-- on the catalog) and skips it.
CREATE FUNCTION profilestore_ensure_event_partitions(start timestamptz, months integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    first_month timestamp := date_trunc('month', start AT TIME ZONE 'UTC');
    lo timestamp;
    name text;
    created integer := 0;
BEGIN
    FOR k IN 0 .. months - 1 LOOP
        lo := first_month + make_interval(months => k);
        name := 'events_' || to_char(lo, 'YYYY_MM');
        CONTINUE WHEN to_regclass(format('%I', name)) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                name, lo AT TIME ZONE 'UTC', (lo + interval '1 month') AT TIME ZONE 'UTC'
            );
            created := created + 1;
        EXCEPTION WHEN check_violation OR duplicate_table OR unique_violation THEN
            RAISE NOTICE 'partition % not created: %', name, SQLERRM;
        END;
    END LOOP;
    RETURN created;
END
$$;
