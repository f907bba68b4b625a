-- The event log: every attempt and outcome of every tool call, append-only.
CREATE TABLE agent_tool_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- monotonic order of appends
    event_id         TEXT    NOT NULL UNIQUE,
    idempotency_key  TEXT,                               -- NOT unique: one row per attempt
    tool_name        TEXT    NOT NULL,
    effect           TEXT    NOT NULL,
    input            TEXT,                               -- canonical JSON (RFC 8785)
    input_hash       TEXT,                               -- SHA-256 of the canonical input
    output           TEXT,                               -- canonical JSON
    status           TEXT    NOT NULL,
    rejection_reason TEXT,
    rule_name        TEXT,
    error            TEXT,
    correlation_id   TEXT,
    parent_event_id  TEXT,
    attempt          INTEGER,
    duration_ms      REAL,
    created_at       REAL    NOT NULL,                   -- Unix seconds, UTC
    completed_at     REAL
);
CREATE INDEX agent_tool_events_by_correlation ON agent_tool_events (correlation_id, seq);
CREATE INDEX agent_tool_events_by_key ON agent_tool_events (idempotency_key, seq);
CREATE INDEX agent_tool_events_by_tool ON agent_tool_events (tool_name, seq);

-- History is not rewritten: the database itself refuses UPDATE and DELETE.
CREATE TRIGGER agent_tool_events_no_update BEFORE UPDATE ON agent_tool_events
BEGIN
    SELECT RAISE(ABORT, 'agent_tool_events is append-only');
END;
CREATE TRIGGER agent_tool_events_no_delete BEFORE DELETE ON agent_tool_events
BEGIN
    SELECT RAISE(ABORT, 'agent_tool_events is append-only');
END;

-- Idempotency claims: one row per key, changed only by compare-and-set on `version`.
CREATE TABLE agent_tool_claims (
    idempotency_key TEXT    PRIMARY KEY,
    tool_name       TEXT    NOT NULL,
    input_hash      TEXT    NOT NULL,
    state           TEXT    NOT NULL
        CHECK (state IN ('running', 'done', 'failed', 'released', 'indeterminate')),
    owner           TEXT,
    lease_until     REAL,
    version         INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    output          TEXT,
    error           TEXT,
    created_at      REAL    NOT NULL,
    completed_at    REAL,
    expires_at      REAL,
    call_event_id   TEXT
) WITHOUT ROWID;
