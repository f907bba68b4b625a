-- Approvals: a person's yes or no, bound to one exact call.
-- A grant is bound to the tool, the canonical input hash, the idempotency key and the
-- fingerprint of the rules in force (together: `binding`); it is single use and expires.
CREATE TABLE agent_tool_approvals (
    approval_id       TEXT PRIMARY KEY,
    binding           TEXT NOT NULL,
    tool_name         TEXT NOT NULL,
    effect            TEXT NOT NULL,
    input_hash        TEXT NOT NULL,
    idempotency_key   TEXT,
    rules_fingerprint TEXT NOT NULL,
    correlation_id    TEXT,
    call_id           TEXT,
    input             TEXT,
    rule_name         TEXT,
    reason            TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'used')),
    requested_at      DOUBLE PRECISION NOT NULL,
    decided_at        DOUBLE PRECISION,
    decided_by        TEXT,
    note              TEXT,
    expires_at        DOUBLE PRECISION,
    used_by           TEXT,
    used_at           DOUBLE PRECISION,
    signature         TEXT
);
-- One open request per binding: a repeated call waits on the same request.
CREATE UNIQUE INDEX agent_tool_approvals_one_pending ON agent_tool_approvals (binding)
    WHERE status = 'pending';
CREATE INDEX agent_tool_approvals_by_binding ON agent_tool_approvals (binding, requested_at);
CREATE INDEX agent_tool_approvals_by_status ON agent_tool_approvals (status, requested_at);

-- The application role additionally needs (replace `dar_app`):
--   GRANT SELECT, INSERT, UPDATE ON agent_tool_approvals TO dar_app;
