-- Postmortem support: calls, a tamper-evident hash chain, retention, redaction salt.

-- Every row of one execute() shares its call_id; children point at the parent's call_id.
ALTER TABLE agent_tool_events ADD COLUMN call_id TEXT;
-- sha256(previous row_hash of the same correlation id || sha256 of this row's content).
ALTER TABLE agent_tool_events ADD COLUMN row_hash TEXT;

-- The head of each chain: one per correlation id; a row without one chains within its call
-- ('call:' || call_id), so uncorrelated writers never wait on a shared head.
CREATE TABLE agent_tool_chain_heads (
    correlation_id TEXT    PRIMARY KEY,
    head           TEXT    NOT NULL
) WITHOUT ROWID;

-- What `dar purge` removed, with the last purged hash of each chain (so verify resumes there).
CREATE TABLE agent_tool_purges (
    purge_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    purged_at   REAL    NOT NULL,
    before      REAL    NOT NULL,
    rows        INTEGER NOT NULL,
    checkpoints TEXT    NOT NULL   -- JSON {correlation_id: {"seq": n, "row_hash": h}}
);

CREATE TABLE dar_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO dar_meta (name, value) VALUES ('redaction_salt', lower(hex(randomblob(16))));
