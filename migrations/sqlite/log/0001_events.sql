-- The event log. One row per event, in commit order; nothing here is ever updated or deleted.
-- `envelope` holds the exact bytes the leaf hash was computed from, so verification never
-- depends on re-serialising anything. The other columns are copies of envelope fields kept for
-- the indexes that enforce the log's invariants and serve its lookups.

CREATE TABLE events (
    -- Global, gap-free, in commit order, from 1 (an alias of the rowid).
    position     INTEGER PRIMARY KEY CHECK (position > 0),
    stream       TEXT    NOT NULL,
    -- Per stream, from 0; the unique index is the optimistic-concurrency guard of last resort.
    version      INTEGER NOT NULL CHECK (version >= 0),
    org_id       TEXT,
    -- Contiguous per organization, from 1, so an organization's export with a gap is visibly
    -- incomplete. NULL exactly when the event belongs to no organization.
    org_sequence INTEGER CHECK (org_sequence > 0),
    -- The idempotency key.
    event_id     TEXT    NOT NULL UNIQUE,
    event_type   TEXT    NOT NULL,
    envelope     BLOB    NOT NULL,
    -- SHA-256(0x00 || envelope), computed once at append.
    leaf_hash    BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    UNIQUE (stream, version),
    UNIQUE (org_id, org_sequence),
    CHECK ((org_id IS NULL) = (org_sequence IS NULL))
);

-- The log is append-only. These triggers turn an accidental UPDATE or DELETE (a bug, or an
-- operator at the sqlite3 prompt) into an error instead of a silently rewritten history.
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
