-- Signed checkpoints of the audit chain: each covers every record up to `seq` and names the
-- checkpoint before it; the signature (Ed25519, key in the vault) is over all of it.
CREATE TABLE audit_checkpoints (
    seq       INTEGER NOT NULL PRIMARY KEY,
    hash      TEXT    NOT NULL,
    at_ms     INTEGER NOT NULL,
    prev      INTEGER NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL
) STRICT;
