-- Applied inside one transaction, under an advisory lock, with search_path set to the
-- configured schema: several workers starting at once migrate exactly once.

-- The event log: every attempt and outcome of every tool call, append-only.
CREATE TABLE agent_tool_events (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- order of appends
    event_id         UUID        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    idempotency_key  TEXT,                    -- NOT unique: one row per attempt
    tool_name        TEXT        NOT NULL,
    effect           TEXT        NOT NULL,
    input            JSONB,                   -- canonical JSON (RFC 8785) of the input
    input_hash       TEXT,                    -- SHA-256 of the canonical input
    output           JSONB,
    status           TEXT        NOT NULL,
    rejection_reason TEXT,
    rule_name        TEXT,
    error            TEXT,
    correlation_id   TEXT,
    parent_event_id  UUID,
    attempt          INTEGER,
    duration_ms      DOUBLE PRECISION,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ
);
CREATE INDEX agent_tool_events_by_correlation ON agent_tool_events (correlation_id, seq);
CREATE INDEX agent_tool_events_by_key ON agent_tool_events (idempotency_key, seq);
CREATE INDEX agent_tool_events_by_tool ON agent_tool_events (tool_name, seq);

-- History is not rewritten: the database refuses UPDATE, DELETE and TRUNCATE, whoever asks.
CREATE FUNCTION agent_tool_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'agent_tool_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER agent_tool_events_append_only
    BEFORE UPDATE OR DELETE ON agent_tool_events
    FOR EACH ROW EXECUTE FUNCTION agent_tool_events_refuse_change();
CREATE TRIGGER agent_tool_events_no_truncate
    BEFORE TRUNCATE ON agent_tool_events
    FOR EACH STATEMENT EXECUTE FUNCTION agent_tool_events_refuse_change();

-- Idempotency claims: one row per key, changed only by compare-and-set on `version`.
-- Times are Unix seconds from the runtime's (injectable) clock.
CREATE TABLE agent_tool_claims (
    idempotency_key TEXT             PRIMARY KEY,
    tool_name       TEXT             NOT NULL,
    input_hash      TEXT             NOT NULL,
    state           TEXT             NOT NULL
        CHECK (state IN ('running', 'done', 'failed', 'released', 'indeterminate')),
    owner           TEXT,
    lease_until     DOUBLE PRECISION,
    version         INTEGER          NOT NULL,
    attempts        INTEGER          NOT NULL,
    output          TEXT,            -- canonical JSON text, returned verbatim on a hit
    error           TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    completed_at    DOUBLE PRECISION,
    expires_at      DOUBLE PRECISION,
    call_event_id   UUID
);

-- Least privilege. The application role needs only this (replace `dar_app`):
--   GRANT USAGE ON SCHEMA <schema> TO dar_app;
--   GRANT SELECT, INSERT ON agent_tool_events TO dar_app;          -- never UPDATE/DELETE
--   GRANT SELECT, INSERT, UPDATE ON agent_tool_claims TO dar_app;  -- claims change state
--   GRANT SELECT ON dar_migrations TO dar_app;
-- Run `dar migrate` as the owner of the schema; the triggers above hold even for the owner.
