-- Where each background job (e.g. the member-removal process manager) has read the log to.
-- Jobs are idempotent by event id, so losing this table only makes them re-check old events.
CREATE TABLE job_checkpoints (
    job      TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
