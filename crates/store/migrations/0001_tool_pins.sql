-- Tool pins: the approved definition of each tool, per upstream.
CREATE TABLE tool_pins (
    upstream    TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    definition  TEXT    NOT NULL,
    approved_at INTEGER NOT NULL,
    approved_by TEXT    NOT NULL,
    PRIMARY KEY (upstream, tool)
) STRICT;

-- Definitions seen that are not the pinned one (a change, or a new tool awaiting approval).
CREATE TABLE tool_sightings (
    upstream   TEXT    NOT NULL,
    tool       TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    definition TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (upstream, tool, hash)
) STRICT;
