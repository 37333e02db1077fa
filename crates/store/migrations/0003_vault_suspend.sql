-- A credential suspended for misuse stays unusable until resumed.
ALTER TABLE vault_secrets ADD COLUMN suspended_at INTEGER;
ALTER TABLE vault_secrets ADD COLUMN suspended_reason TEXT;
