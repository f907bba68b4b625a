-- Durable runs: an agent's whole loop, resumed from its journal after a crash or a
-- person's decision without asking the model again. One row per run (its session id);
-- the journal itself is the run's `run_step` rows in the event log, hash-chained like every
-- other row. The row moves by compare-and-set on `version`: one worker drives a run.
CREATE TABLE agent_tool_runs (
    session_id   TEXT PRIMARY KEY,
    agent        TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('running', 'suspended', 'finished', 'failed')),
    steps        BIGINT NOT NULL,
    tokens       BIGINT NOT NULL,
    error        TEXT,
    approval_id  TEXT,
    arguments    TEXT NOT NULL,
    output       TEXT,
    tokens_saved BIGINT NOT NULL,
    owner        TEXT,
    lease_until  DOUBLE PRECISION,
    version      BIGINT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX agent_tool_runs_by_state ON agent_tool_runs (state, lease_until);

-- The application role additionally needs (replace `dar_app`):
--   GRANT SELECT, INSERT, UPDATE ON agent_tool_runs TO dar_app;
