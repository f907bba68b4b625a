-- Sagas: multi-step tool sequences whose completed steps are undone, once each, when a
-- later step fails. One row per saga; its steps (tool, key, input, outcome, compensation)
-- are a JSON list moved by compare-and-set on `version`, so two workers never both drive it.
CREATE TABLE agent_tool_sagas (
    saga_id        TEXT PRIMARY KEY,
    correlation_id TEXT,
    call_id        TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('open', 'compensating', 'completed',
                                                  'compensated', 'compensation_failed',
                                                  'needs_operator')),
    owner          TEXT,
    lease_until    REAL,
    steps          TEXT NOT NULL,
    version        INTEGER NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    error          TEXT
);
CREATE INDEX agent_tool_sagas_by_state ON agent_tool_sagas (state, lease_until);
