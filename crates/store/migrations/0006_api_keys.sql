-- Client API keys: a principal's key is stored as the SHA-256 of its secret part only.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    hash       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
