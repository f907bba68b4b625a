-- Postmortem support: calls, a tamper-evident hash chain, retention, redaction salt.

-- Every row of one execute() shares its call_id; children point at the parent's call_id.
ALTER TABLE agent_tool_events ADD COLUMN call_id UUID;
-- sha256(previous row_hash of the same correlation id || sha256 of this row's content).
ALTER TABLE agent_tool_events ADD COLUMN row_hash TEXT;

-- The head of each chain: one per correlation id; a row without one chains within its call
-- ('call:' || call_id), so uncorrelated writers never wait on a shared head. Appending
-- takes this one row's lock: writers of the same session serialize, unrelated ones do not.
CREATE TABLE agent_tool_chain_heads (
    correlation_id TEXT   PRIMARY KEY,
    head           TEXT   NOT NULL
);

-- What `dar purge` removed, with the last purged hash of each chain (so verify resumes there).
CREATE TABLE agent_tool_purges (
    purge_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purged_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    before      TIMESTAMPTZ NOT NULL,
    rows        BIGINT      NOT NULL,
    checkpoints JSONB       NOT NULL
);

CREATE TABLE dar_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);

-- The application role additionally needs (replace `dar_app`):
--   GRANT SELECT, INSERT, UPDATE ON agent_tool_chain_heads TO dar_app;
--   GRANT SELECT ON dar_meta, agent_tool_purges TO dar_app;
INSERT INTO dar_meta (name, value) VALUES ('redaction_salt', replace(gen_random_uuid()::text, '-', ''));

-- The one way to delete history: `dar purge`, connected as the table owner, in a transaction
-- that sets dar.purge = on. The trigger lets a DELETE through only then; an application role
-- (see the grants in 0001) can set the flag but does not own the table, so it is refused.
CREATE OR REPLACE FUNCTION agent_tool_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('dar.purge', true) = 'on'
       AND pg_has_role(current_user, (SELECT tableowner FROM pg_tables
                                      WHERE tablename = TG_TABLE_NAME
                                        AND schemaname = TG_TABLE_SCHEMA), 'USAGE') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'agent_tool_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
