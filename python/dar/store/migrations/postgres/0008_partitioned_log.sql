-- The event log, partitioned by month of `created_at` (Postgres only), so that retention
-- drops whole months (DETACH + DROP: no row is deleted, nothing to vacuum) and a log may
-- grow for years. Monthly: retention is stated in months or days, a month's partition
-- stays a size one scan handles, and years of them stay a few dozen (the planner's
-- work on reads that cannot prune grows with the number of partitions).
--
-- An existing log is not copied: the table is renamed and attached as the partition
-- `agent_tool_events_before` for every time up to the end of its newest row's month
-- (one read-only scan to check that, and two unique indexes built over it). A
-- DEFAULT partition takes any row no month partition covers, so an insert never fails.
--
-- Uniques on a partitioned table must include `created_at`. `event_id` unique makes a
-- retried statement (the same row, so the same `created_at`) insert nothing:
-- (event_id, created_at) keeps exactly that. `seq` comes from one identity sequence.

-- The append-only trigger finds the owner by the table's oid (an index lookup): by name, in
-- pg_tables, it cost a scan of the catalog per deleted row (a purge's DELETE of the month
-- the cutoff falls in).
CREATE OR REPLACE FUNCTION agent_tool_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('dar.purge', true) = 'on'
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID),
                       'USAGE') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'agent_tool_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

ALTER TABLE agent_tool_events RENAME TO agent_tool_events_before;
-- Its uniques give way to the log's (which include `created_at`).
ALTER TABLE agent_tool_events_before DROP CONSTRAINT agent_tool_events_pkey,
    DROP CONSTRAINT agent_tool_events_event_id_key;
DROP TRIGGER agent_tool_events_append_only ON agent_tool_events_before;
DROP TRIGGER agent_tool_events_no_truncate ON agent_tool_events_before;
ALTER INDEX agent_tool_events_by_correlation RENAME TO agent_tool_events_before_by_correlation;
ALTER INDEX agent_tool_events_by_key RENAME TO agent_tool_events_before_by_key;
ALTER INDEX agent_tool_events_by_tool RENAME TO agent_tool_events_before_by_tool;

CREATE TABLE agent_tool_events (LIKE agent_tool_events_before INCLUDING DEFAULTS)
    PARTITION BY RANGE (created_at);
ALTER TABLE agent_tool_events ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY;
ALTER TABLE agent_tool_events ADD PRIMARY KEY (seq, created_at);
ALTER TABLE agent_tool_events ADD UNIQUE (event_id, created_at);
CREATE INDEX agent_tool_events_by_correlation ON agent_tool_events (correlation_id, seq);
CREATE INDEX agent_tool_events_by_key ON agent_tool_events (idempotency_key, seq);
CREATE INDEX agent_tool_events_by_tool ON agent_tool_events (tool_name, seq);
CREATE TRIGGER agent_tool_events_append_only
    BEFORE UPDATE OR DELETE ON agent_tool_events
    FOR EACH ROW EXECUTE FUNCTION agent_tool_events_refuse_change();
CREATE TRIGGER agent_tool_events_no_truncate
    BEFORE TRUNCATE ON agent_tool_events
    FOR EACH STATEMENT EXECUTE FUNCTION agent_tool_events_refuse_change();
CREATE TABLE agent_tool_events_default PARTITION OF agent_tool_events DEFAULT;

-- Creates the month partitions from the month of `at` to `ahead` months after it, each
-- when missing; returns the names it created. Run by the store when it starts, by
-- `dar gc` and by `dar purge` (never by an insert). A month the DEFAULT partition already
-- holds rows of is left to DEFAULT (creating it would have to move them).
CREATE FUNCTION agent_tool_events_add_partitions(at TIMESTAMPTZ, ahead INTEGER)
RETURNS SETOF TEXT LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    start TIMESTAMPTZ;
    name TEXT;
    covered TIMESTAMPTZ := (SELECT value::timestamptz FROM dar_meta
                            WHERE dar_meta.name = 'events_partitioned_from');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('dar_partitions:' || current_schema()));
    FOR i IN 0 .. ahead LOOP
        start := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                 + make_interval(months => i);
        name := 'agent_tool_events_' || to_char(start AT TIME ZONE 'UTC', '"y"YYYY"m"MM');
        CONTINUE WHEN start < covered OR to_regclass(name) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT 1 FROM agent_tool_events_default WHERE created_at >= start
                              AND created_at < start + interval '1 month');
        EXECUTE format('CREATE TABLE %I PARTITION OF agent_tool_events'
                       ' FOR VALUES FROM (%L) TO (%L)', name, start, start + interval '1 month');
        EXECUTE format('CREATE TRIGGER agent_tool_events_no_truncate BEFORE TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION agent_tool_events_refuse_change()',
                       name);
        RETURN NEXT name;
    END LOOP;
END
$$;

DO $$
DECLARE
    newest TIMESTAMPTZ := (SELECT max(created_at) FROM agent_tool_events_before);
    upto TIMESTAMPTZ;
    grant_row RECORD;
BEGIN
    -- The application role keeps the grants it had on the log.
    FOR grant_row IN
        SELECT a.privilege_type, coalesce(r.rolname, 'PUBLIC') AS grantee
        FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'agent_tool_events_before'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON agent_tool_events TO %s', grant_row.privilege_type,
                       CASE WHEN grant_row.grantee = 'PUBLIC' THEN 'PUBLIC'
                            ELSE quote_ident(grant_row.grantee) END);
    END LOOP;
    IF newest IS NULL THEN  -- a new log: nothing to keep
        DROP TABLE agent_tool_events_before;
        INSERT INTO dar_meta (name, value) VALUES ('events_partitioned_from', '-infinity');
    ELSE
        upto := date_trunc('month', greatest(newest, now()) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                + interval '1 month';
        -- Its own identity would be dropped with it: the log's `seq` goes on from here.
        EXECUTE format('ALTER TABLE agent_tool_events ALTER COLUMN seq RESTART WITH %s',
                       (SELECT max(seq) + 1 FROM agent_tool_events_before));
        ALTER TABLE agent_tool_events_before ALTER COLUMN seq DROP IDENTITY;
        EXECUTE format('ALTER TABLE agent_tool_events ATTACH PARTITION agent_tool_events_before'
                       ' FOR VALUES FROM (MINVALUE) TO (%L)', upto);
        CREATE TRIGGER agent_tool_events_no_truncate BEFORE TRUNCATE ON agent_tool_events_before
            FOR EACH STATEMENT EXECUTE FUNCTION agent_tool_events_refuse_change();
        INSERT INTO dar_meta (name, value) VALUES ('events_partitioned_from', upto::text);
    END IF;
END
$$;

-- This month and the next, as the store does when it starts (`PARTITIONS_AHEAD`).
SELECT agent_tool_events_add_partitions(now(), 1);
