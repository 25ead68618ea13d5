INSERT INTO credentials (
    credential_id, kind, org_id, name, environment_hint, project_id, owner, status, scopes,
    conditions, token_prefix, secret_hash, server_admin, created_at, expires_at, flagged_reason,
    flagged_at, state, last_position
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
ON CONFLICT (credential_id) DO UPDATE SET
    name = excluded.name,
    project_id = excluded.project_id,
    owner = excluded.owner,
    status = excluded.status,
    scopes = excluded.scopes,
    conditions = excluded.conditions,
    token_prefix = excluded.token_prefix,
    secret_hash = excluded.secret_hash,
    expires_at = excluded.expires_at,
    flagged_reason = excluded.flagged_reason,
    flagged_at = excluded.flagged_at,
    state = excluded.state,
    last_position = excluded.last_position
