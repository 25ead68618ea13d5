-- Every kind of audit query answered from an index, however rare the type or old the window:
-- by type, newest first, is a range of `audit_by_type`; a time window is a range of
-- `audit_by_time` (its rowid is the position, so the newest entries of the window are picked
-- from the index alone before any row is read).
CREATE INDEX audit_by_type ON audit_trail (org_id, event_type, position);
CREATE INDEX audit_by_time ON audit_trail (org_id, recorded_at);
CREATE INDEX audit_by_actor ON audit_trail (org_id, actor_id, position);
