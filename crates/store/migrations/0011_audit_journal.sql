-- How far each audit journal segment (a file in the data folder's `audit-journal/`) has been
-- indexed into `audit_records`: the number of its last record stored. Updated in the same
-- transaction as the records, so a segment left by a crashed process is replayed from exactly
-- where its indexing stopped.
CREATE TABLE audit_journal (
    segment TEXT    NOT NULL PRIMARY KEY,
    upto    INTEGER NOT NULL
) STRICT;
