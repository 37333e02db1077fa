-- Vault secrets: encrypted values (XChaCha20-Poly1305), name and owner bound as associated data.
CREATE TABLE vault_secrets (
    name         TEXT    NOT NULL,
    owner        TEXT    NOT NULL,
    nonce        BLOB    NOT NULL,
    ciphertext   BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    PRIMARY KEY (name, owner)
) STRICT;

-- Vault metadata: the key check (a known value sealed under the master key) and KDF salts.
CREATE TABLE vault_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
