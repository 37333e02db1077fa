-- Small settings the gateway keeps (the admin password's Argon2id hash).
CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
