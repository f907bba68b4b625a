-- Guards (Budget, Similar): each guarded call's share of its guard's scope, written in its
-- own short transaction before the claim, serialized per scope. A row counts while it is
-- held (until its lease, or for good while the call awaits a person or is indeterminate;
-- or while the claim it made is still running under its event id) or used (executed);
-- a call that does not run releases it. Similar keeps the text's embedding here, so the
-- history is never embedded again.
CREATE TABLE agent_tool_guards (
    reservation_id  TEXT PRIMARY KEY,
    tool_name       TEXT NOT NULL,
    guard           TEXT NOT NULL,
    scope           TEXT NOT NULL,
    amount          REAL NOT NULL,
    text            TEXT,
    vector          TEXT,            -- float32 little-endian, base64
    idempotency_key TEXT,
    event_id        TEXT NOT NULL,
    created_at      REAL NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('held', 'used', 'released')),
    held_until      REAL
);
CREATE INDEX agent_tool_guards_scope ON agent_tool_guards (tool_name, guard, scope, created_at);
CREATE INDEX agent_tool_guards_event ON agent_tool_guards (event_id);
