-- The lease of the process that runs the work done once per ledger (checkpoint signing, the
-- expiry sweeper, process managers). One row at most. Its holder renews it about every second;
-- once `expires_at` (the database's clock) has passed, any process may take it, which raises
-- `term`. A holder that stalled past its lease finds on resuming that the row names another
-- holder, and steps down.
CREATE TABLE leader_lease (
    id         INTEGER     PRIMARY KEY CHECK (id = 1),
    holder     UUID        NOT NULL,
    term       BIGINT      NOT NULL CHECK (term > 0),
    expires_at TIMESTAMPTZ NOT NULL
);
