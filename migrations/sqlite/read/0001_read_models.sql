-- Read models fed from the log. Every table is derived: dropping this file and replaying the log
-- from position 0 gives the same rows. Times are unix milliseconds (UTC).

CREATE TABLE projection_checkpoints (
    projector TEXT PRIMARY KEY,
    position  INTEGER NOT NULL
);

CREATE TABLE organizations (
    org_id     TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE members (
    member_id  TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL,
    removed    INTEGER NOT NULL DEFAULT 0,
    added_at   INTEGER NOT NULL,
    removed_at INTEGER
);
CREATE INDEX members_by_org ON members (org_id, email);

CREATE TABLE projects (
    project_id TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX projects_by_org ON projects (org_id, name);

CREATE TABLE environments (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);

-- The credential inventory: every kind, every state. Nothing is ever deleted.
CREATE TABLE credentials (
    credential_id    TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    org_id           TEXT,
    name             TEXT NOT NULL,
    environment_hint TEXT,
    project_id       TEXT,
    owner            TEXT,
    status           TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    conditions       TEXT NOT NULL,
    token_prefix     TEXT NOT NULL,
    secret_hash      TEXT NOT NULL,
    server_admin     INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER,
    flagged_reason   TEXT,
    flagged_at       INTEGER,
    -- The aggregate's state as the domain's evolve left it (JSON), so the projector folds the
    -- next event with the domain's own rules instead of re-implementing them in SQL.
    state            TEXT NOT NULL,
    last_position    INTEGER NOT NULL
);
CREATE INDEX credentials_by_org ON credentials (org_id, kind, credential_id);
CREATE INDEX credentials_by_owner ON credentials (owner);

-- Every secret value a credential ever had, so a leaked old value can still be traced.
CREATE TABLE credential_secrets (
    secret_hash   TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    replaced_at   INTEGER
);
CREATE INDEX credential_secrets_by_credential ON credential_secrets (credential_id);

CREATE TABLE credential_usage (
    credential_id        TEXT PRIMARY KEY,
    last_used_at         INTEGER,
    last_used_ip         TEXT,
    last_used_user_agent TEXT,
    use_count            INTEGER NOT NULL DEFAULT 0,
    denied_count         INTEGER NOT NULL DEFAULT 0,
    last_denied_at       INTEGER,
    last_denied_reason   TEXT
);

CREATE TABLE usage_ips (
    credential_id TEXT NOT NULL,
    ip            TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    use_count     INTEGER NOT NULL DEFAULT 0,
    denied_count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (credential_id, ip)
);

CREATE TABLE usage_user_agents (
    credential_id TEXT NOT NULL,
    user_agent    TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    use_count     INTEGER NOT NULL DEFAULT 0,
    denied_count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (credential_id, user_agent)
);

-- The audit trail: one indexed row per event of the log.
CREATE TABLE audit_trail (
    position      INTEGER PRIMARY KEY,
    recorded_at   INTEGER NOT NULL,
    org_id        TEXT,
    credential_id TEXT,
    event_type    TEXT NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT NOT NULL,
    ip            TEXT,
    user_agent    TEXT,
    outcome       TEXT NOT NULL,
    summary       TEXT NOT NULL,
    leaf_hash     TEXT NOT NULL
);
CREATE INDEX audit_by_org ON audit_trail (org_id, position);
CREATE INDEX audit_by_credential ON audit_trail (credential_id, position);
