-- The event log. One row per event, in commit order; nothing here is ever updated or deleted.
-- `envelope` holds the exact bytes the leaf hash was computed from, so verification never
-- depends on re-serialising anything. The other columns are copies of envelope fields kept for
-- the indexes that enforce the log's invariants and serve its lookups.

CREATE TABLE events (
    -- Global, gap-free, in commit order, from 1: handed out under the append lock, never by a
    -- sequence (a sequence leaves gaps on rollback and numbers in start order, not commit order).
    position     BIGINT PRIMARY KEY CHECK (position > 0),
    stream       TEXT   NOT NULL,
    -- Per stream, from 0; the unique constraint is the optimistic-concurrency guard of last resort.
    version      BIGINT NOT NULL CHECK (version >= 0),
    org_id       UUID,
    -- Contiguous per organization, from 1. NULL exactly when the event belongs to no organization.
    org_sequence BIGINT CHECK (org_sequence > 0),
    -- The idempotency key.
    event_id     UUID   NOT NULL UNIQUE,
    event_type   TEXT   NOT NULL,
    envelope     BYTEA  NOT NULL,
    -- SHA-256(0x00 || envelope), computed once at append.
    leaf_hash    BYTEA  NOT NULL CHECK (length(leaf_hash) = 32),
    UNIQUE (stream, version),
    UNIQUE (org_id, org_sequence),
    CHECK ((org_id IS NULL) = (org_sequence IS NULL))
);

-- The log is append-only. These triggers turn an accidental UPDATE, DELETE or TRUNCATE (a bug, or
-- an operator at the psql prompt) into an error instead of a silently rewritten history. Someone
-- who drops them can still rewrite rows: the signed checkpoints and `credledger audit verify`
-- find that.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END
$$;

CREATE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
