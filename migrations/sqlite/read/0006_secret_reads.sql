-- Every read of an environment's secrets: who read which version, when, from where. Names only,
-- never values.
CREATE TABLE secret_reads (
    position INTEGER PRIMARY KEY,
    org_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    names TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX secret_reads_by_environment ON secret_reads (org_id, project_id, environment, position);
CREATE INDEX secret_reads_by_credential ON secret_reads (credential_id, position);
