-- A multi-row insert: the writer appends one placeholder tuple per event. One statement per few
-- hundred rows amortises the per-statement cost that dominates single-row inserts.
-- OR ROLLBACK: a failed insert fails the whole batch anyway, and saying so up front spares SQLite
-- the statement journal it would otherwise keep to undo just this statement.
INSERT OR ROLLBACK INTO events (position, stream, version, org_id, org_sequence, event_id, event_type, envelope, leaf_hash)
VALUES
