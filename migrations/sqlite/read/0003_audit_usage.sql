-- What a usage entry of the audit trail needs for incident response, as columns rather than
-- parsed out of the summary: the request's method and route template, the denial's reason, and
-- how many refused requests a coalesced denial counts (1 for a use). NULL for other events.
ALTER TABLE audit_trail ADD COLUMN method TEXT;
ALTER TABLE audit_trail ADD COLUMN route TEXT;
ALTER TABLE audit_trail ADD COLUMN reason TEXT;
ALTER TABLE audit_trail ADD COLUMN count INTEGER;

-- Rows written before this migration lack the new columns. The trail is derived: empty it and
-- drop its checkpoint, and the runner replays the log into it from position 0.
DELETE FROM audit_trail;
DELETE FROM projection_checkpoints WHERE projector = 'audit';
