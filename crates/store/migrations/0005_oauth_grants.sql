-- An upstream's OAuth grant: which provider, the scopes it was granted, and the vault secret
-- that holds its refresh token (the token itself lives sealed in vault_secrets).
CREATE TABLE oauth_grants (
    upstream   TEXT NOT NULL,
    owner      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (upstream, owner)
);
