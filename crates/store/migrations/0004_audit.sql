-- The audit log: one row per decision, each chained to its predecessor by hash.
CREATE TABLE audit_records (
    seq   INTEGER NOT NULL PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    body  TEXT    NOT NULL,
    prev  TEXT    NOT NULL,
    hash  TEXT    NOT NULL
) STRICT;
