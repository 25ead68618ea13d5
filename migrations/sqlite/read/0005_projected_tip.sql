-- The last event the read models applied, by position and leaf hash: at start the server checks
-- that the log still holds that very event, so read models are never continued on a log that
-- was replaced, or rolled back and written again.
CREATE TABLE projected_tip (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    position INTEGER NOT NULL,
    leaf_hash BLOB NOT NULL
);
