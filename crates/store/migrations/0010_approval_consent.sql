-- Consent that needs a person: an approval a policy reserved for an operator
-- (`@approval("operator")`) is decided only at a terminal or on the admin page; the session a
-- call waits in (its approvals expire when it ends); the call's arguments in full, for the
-- person who decides (secrets scrubbed).
ALTER TABLE approvals ADD COLUMN operator_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN session TEXT NOT NULL DEFAULT '';
ALTER TABLE approvals ADD COLUMN arguments_full TEXT NOT NULL DEFAULT '';
CREATE INDEX approvals_by_session ON approvals (session, state);
