-- Calls waiting for (or given) a person's approval. `call_digest` identifies the call
-- (principal, upstream, tool, arguments); an approval for one call is used once
-- (state 'approved' -> 'used'); one with `grant_until_ms` lets the same call through until then.
CREATE TABLE approvals (
    id             TEXT    NOT NULL PRIMARY KEY,
    principal      TEXT    NOT NULL,
    client         TEXT    NOT NULL,
    upstream       TEXT    NOT NULL,
    tool           TEXT    NOT NULL,
    arguments      TEXT    NOT NULL,
    call_digest    TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    created_ms     INTEGER NOT NULL,
    expires_ms     INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    decided_by     TEXT,
    decided_ms     INTEGER,
    note           TEXT,
    grant_until_ms INTEGER
) STRICT;
CREATE INDEX approvals_by_call ON approvals (call_digest, state);
CREATE INDEX approvals_by_state ON approvals (state, created_ms);
