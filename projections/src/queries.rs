//! Queries over the read models: the credential inventory with its filters, the usage record,
//! members and projects, the audit trail. Each runs on a pooled read-only connection.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params_from_iter};

use credledger_domain::token::TokenDigest;
use credledger_domain::usage;
use credledger_domain::values::Cidr;
use credledger_domain::{CredentialId, CredentialKind, MemberId, OrgId, ProjectId, Status};

use crate::credential::Credential;
use crate::projector::millis;
use crate::{ProjectionError, Projections};

/// Filters of a credential list (DESIGN.md §8). Every field narrows; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct CredentialFilter {
    pub kind: Option<CredentialKind>,
    pub status: Option<Status>,
    pub environment_hint: Option<String>,
    pub project_id: Option<ProjectId>,
    pub owner: Option<MemberId>,
    pub flagged: Option<bool>,
    /// Expires between now and now + this.
    pub expiring_within: Option<TimeDelta>,
    /// Not used (or never used) for at least this long.
    pub unused_for: Option<TimeDelta>,
}

/// A credential of the inventory with its usage summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub credential: Credential,
    pub usage: UsageSummary,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSummary {
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    pub last_used_user_agent: Option<String>,
    pub use_count: u64,
    pub denied_count: u64,
}

/// A network address or user agent a credential was presented from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFrom {
    pub value: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub use_count: u64,
    pub denied_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member_id: String,
    pub email: String,
    pub role: String,
    pub removed: bool,
}

/// Every table's rows, table by table: see [`Projections::snapshot`].
pub type Snapshot = Vec<(String, Vec<Vec<Value>>)>;

fn member_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MemberRow> {
    Ok(MemberRow { member_id: row.get(0)?, email: row.get(1)?, role: row.get(2)?, removed: row.get(3)? })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationRow {
    pub org_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub project_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub environments: Vec<String>,
}

/// An entry of the audit trail. `method`, `route`, `reason` and `count` describe the request of a
/// usage event (CredentialUsed, CredentialAccessDenied, AccessTokenIssued) and are `None` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    pub credential_id: Option<String>,
    pub event_type: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub outcome: String,
    pub summary: String,
    pub leaf_hash: String,
    pub method: Option<String>,
    pub route: Option<String>,
    pub reason: Option<String>,
    /// How many requests the entry stands for: a coalesced denial's count, 1 for a use.
    pub count: Option<u64>,
}

/// Whether an audited event was a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Success,
    Denied,
}

impl AuditOutcome {
    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "success" => Some(Self::Success),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
        }
    }
}

/// Filters of the audit trail. Every field narrows; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub credential_id: Option<CredentialId>,
    /// The actor's id (a member, a credential, or a system actor's name).
    pub actor_id: Option<String>,
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
    pub outcome: Option<AuditOutcome>,
    /// The request came from inside this network.
    pub ip: Option<Cidr>,
}

const AUDIT_COLUMNS: &str = "position, recorded_at, credential_id, event_type, actor_kind, actor_id, ip, user_agent, \
     outcome, summary, leaf_hash, method, route, reason, count";

fn audit_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        position: row.get::<_, i64>(0)? as u64,
        recorded_at: from_millis(row.get(1)?),
        credential_id: row.get(2)?,
        event_type: row.get(3)?,
        actor_kind: row.get(4)?,
        actor_id: row.get(5)?,
        ip: row.get(6)?,
        user_agent: row.get(7)?,
        outcome: row.get(8)?,
        summary: row.get(9)?,
        leaf_hash: row.get(10)?,
        method: row.get(11)?,
        route: row.get(12)?,
        reason: row.get(13)?,
        count: row.get::<_, Option<i64>>(14)?.map(|count| count as u64),
    })
}

/// Whether an entry's request came from inside `network`; an entry without an IP did not.
fn from_network(entry: &AuditEntry, network: &Cidr) -> bool {
    entry.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).is_some_and(|ip| network.contains(ip))
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

const CREDENTIAL_COLUMNS: &str = "c.state, u.last_used_at, u.last_used_ip, u.last_used_user_agent, \
     COALESCE(u.use_count, 0), COALESCE(u.denied_count, 0)";

fn credential_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, UsageSummary)> {
    Ok((
        row.get(0)?,
        UsageSummary {
            last_used_at: row.get::<_, Option<i64>>(1)?.map(from_millis),
            last_used_ip: row.get(2)?,
            last_used_user_agent: row.get(3)?,
            use_count: row.get::<_, i64>(4)? as u64,
            denied_count: row.get::<_, i64>(5)? as u64,
        },
    ))
}

fn decode(state: &str) -> Result<Credential, ProjectionError> {
    serde_json::from_str(state).map_err(|e| ProjectionError::Decode(e.to_string()))
}

impl Projections {
    /// One credential of an organization, whatever its state.
    pub fn credential(&self, org: OrgId, id: CredentialId) -> Result<Option<CredentialRecord>, ProjectionError> {
        let connection = self.reader()?;
        let sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials c \
             LEFT JOIN credential_usage u ON u.credential_id = c.credential_id \
             WHERE c.credential_id = ?1 AND c.org_id = ?2"
        );
        let row = connection.query_row(&sql, [id.to_string(), org.to_string()], credential_record).optional()?;
        row.map(|(state, usage)| Ok(CredentialRecord { credential: decode(&state)?, usage })).transpose()
    }

    /// A credential by id alone, whatever its organization: for a caller that learns the
    /// organization from the credential (a machine's signed assertion names only the machine).
    pub fn credential_by_id(&self, id: CredentialId) -> Result<Option<Credential>, ProjectionError> {
        let connection = self.reader()?;
        let state: Option<String> = connection
            .query_row("SELECT state FROM credentials WHERE credential_id = ?1", [id.to_string()], |row| row.get(0))
            .optional()?;
        state.map(|state| decode(&state)).transpose()
    }

    /// A page of an organization's credentials in id order (ids are v7 UUIDs: creation order),
    /// starting after `after`.
    pub fn credentials(
        &self,
        org: OrgId,
        filter: &CredentialFilter,
        now: DateTime<Utc>,
        after: Option<CredentialId>,
        limit: usize,
    ) -> Result<Vec<CredentialRecord>, ProjectionError> {
        let mut sql = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials c \
             LEFT JOIN credential_usage u ON u.credential_id = c.credential_id WHERE c.org_id = ?"
        );
        let mut args: Vec<Value> = vec![Value::Text(org.to_string())];
        match filter.flagged {
            Some(true) => sql.push_str(" AND c.flagged_reason IS NOT NULL"),
            Some(false) => sql.push_str(" AND c.flagged_reason IS NULL"),
            None => {}
        }
        let mut narrow = |clause: &str, value: Value| {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.push(value);
        };
        if let Some(kind) = filter.kind {
            narrow("c.kind = ?", Value::Text(kind.as_str().to_owned()));
        }
        if let Some(status) = filter.status {
            // Expiry is decided by the clock: an active row past its expiry is listed as expired.
            match status {
                Status::Active => narrow(
                    "c.status = 'active' AND (c.expires_at IS NULL OR c.expires_at > ?)",
                    Value::Integer(millis(now)),
                ),
                Status::Expired => narrow(
                    "(c.status = 'expired' OR (c.status = 'active' AND c.expires_at <= ?))",
                    Value::Integer(millis(now)),
                ),
                other => narrow("c.status = ?", Value::Text(other.as_str().to_owned())),
            }
        }
        if let Some(hint) = &filter.environment_hint {
            narrow("c.environment_hint = ?", Value::Text(hint.clone()));
        }
        if let Some(project) = filter.project_id {
            narrow("c.project_id = ?", Value::Text(project.to_string()));
        }
        if let Some(owner) = filter.owner {
            narrow("c.owner = ?", Value::Text(owner.to_string()));
        }
        if let Some(within) = filter.expiring_within {
            narrow("c.expires_at > ?", Value::Integer(millis(now)));
            narrow("c.expires_at <= ?", Value::Integer(millis(now + within)));
        }
        if let Some(unused) = filter.unused_for {
            narrow("COALESCE(u.last_used_at, c.created_at) <= ?", Value::Integer(millis(now - unused)));
        }
        if let Some(after) = after {
            narrow("c.credential_id > ?", Value::Text(after.to_string()));
        }
        sql.push_str(" ORDER BY c.credential_id LIMIT ?");
        args.push(Value::Integer(limit as i64));
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params_from_iter(args), credential_record)?;
        rows.map(|row| {
            let (state, usage) = row?;
            Ok(CredentialRecord { credential: decode(&state)?, usage })
        })
        .collect()
    }

    /// The distinct IPs a credential was presented from, most recent first.
    pub fn seen_ips(&self, id: CredentialId) -> Result<Vec<SeenFrom>, ProjectionError> {
        self.seen("usage_ips", "ip", id)
    }

    /// The distinct user agents a credential was presented with, most recent first.
    pub fn seen_user_agents(&self, id: CredentialId) -> Result<Vec<SeenFrom>, ProjectionError> {
        self.seen("usage_user_agents", "user_agent", id)
    }

    fn seen(&self, table: &str, column: &str, id: CredentialId) -> Result<Vec<SeenFrom>, ProjectionError> {
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {column}, first_seen, last_seen, use_count, denied_count FROM {table} \
             WHERE credential_id = ?1 ORDER BY last_seen DESC, {column}"
        ))?;
        let rows = statement.query_map([id.to_string()], |row| {
            Ok(SeenFrom {
                value: row.get(0)?,
                first_seen: from_millis(row.get(1)?),
                last_seen: from_millis(row.get(2)?),
                use_count: row.get::<_, i64>(3)? as u64,
                denied_count: row.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn members(&self, org: OrgId) -> Result<Vec<MemberRow>, ProjectionError> {
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(
            "SELECT member_id, email, role, removed FROM members WHERE org_id = ?1 ORDER BY email, member_id",
        )?;
        let rows = statement.query_map([org.to_string()], member_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A member of an organization, current or removed.
    pub fn member(&self, org: OrgId, member: MemberId) -> Result<Option<MemberRow>, ProjectionError> {
        let connection = self.reader()?;
        Ok(connection
            .query_row(
                "SELECT member_id, email, role, removed FROM members WHERE org_id = ?1 AND member_id = ?2",
                [org.to_string(), member.to_string()],
                member_row,
            )
            .optional()?)
    }

    /// The current member of an organization with this email.
    pub fn member_by_email(&self, org: OrgId, email: &str) -> Result<Option<MemberRow>, ProjectionError> {
        let connection = self.reader()?;
        Ok(connection
            .query_row(
                "SELECT member_id, email, role, removed FROM members WHERE org_id = ?1 AND email = ?2 AND removed = 0",
                [org.to_string(), email.to_owned()],
                member_row,
            )
            .optional()?)
    }

    pub fn organization(&self, org: OrgId) -> Result<Option<OrganizationRow>, ProjectionError> {
        let connection = self.reader()?;
        Ok(connection
            .query_row(
                "SELECT org_id, name, created_at FROM organizations WHERE org_id = ?1",
                [org.to_string()],
                |row| {
                    Ok(OrganizationRow { org_id: row.get(0)?, name: row.get(1)?, created_at: from_millis(row.get(2)?) })
                },
            )
            .optional()?)
    }

    /// An organization's projects with their environments, by name.
    pub fn projects(&self, org: OrgId) -> Result<Vec<ProjectRow>, ProjectionError> {
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(
            "SELECT p.project_id, p.name, p.created_at, e.name FROM projects p \
             LEFT JOIN environments e ON e.project_id = p.project_id \
             WHERE p.org_id = ?1 ORDER BY p.name, p.project_id, e.name",
        )?;
        let mut rows = statement.query([org.to_string()])?;
        let mut projects: Vec<ProjectRow> = Vec::new();
        while let Some(row) = rows.next()? {
            let project_id: String = row.get(0)?;
            if projects.last().is_none_or(|last| last.project_id != project_id) {
                projects.push(ProjectRow {
                    project_id,
                    name: row.get(1)?,
                    created_at: from_millis(row.get(2)?),
                    environments: Vec::new(),
                });
            }
            if let (Some(environment), Some(project)) = (row.get::<_, Option<String>>(3)?, projects.last_mut()) {
                project.environments.push(environment);
            }
        }
        Ok(projects)
    }

    /// Machine tokens recorded as active whose expiry has passed at `now`, across
    /// organizations: the expiry sweeper's work list.
    pub fn expired_but_active(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Credential>, ProjectionError> {
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(
            "SELECT state FROM credentials WHERE kind = 'machine_token' AND status = 'active' \
             AND expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
        )?;
        let rows = statement.query_map(rusqlite::params![millis(now), limit as i64], |row| row.get::<_, String>(0))?;
        rows.map(|state| decode(&state?)).collect()
    }

    /// A page of an organization's audit trail, newest first, before position `before`.
    pub fn audit(&self, org: OrgId, before: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>, ProjectionError> {
        self.audit_filtered(org, &AuditFilter::default(), before, limit)
    }

    /// A page of an organization's audit trail that passes `filter`, newest first, before
    /// position `before`. Positions never change once given, so a page's last position is a
    /// cursor that later appends cannot shift.
    pub fn audit_filtered(
        &self,
        org: OrgId,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ProjectionError> {
        let equality = filter.credential_id.is_some() || filter.actor_id.is_some() || filter.event_type.is_some();
        let window = filter.since.is_some() || filter.until.is_some();
        if window && !equality && filter.outcome.is_none() {
            return self.window_page(org, filter, before, limit);
        }
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_trail WHERE org_id = ?");
        let mut args: Vec<Value> = vec![Value::Text(org.to_string())];
        let mut narrow = |clause: &str, value: Value| {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.push(value);
        };
        if let Some(credential) = filter.credential_id {
            narrow("credential_id = ?", Value::Text(credential.to_string()));
        }
        if let Some(actor) = &filter.actor_id {
            narrow("actor_id = ?", Value::Text(actor.clone()));
        }
        if let Some(event_type) = &filter.event_type {
            narrow("event_type = ?", Value::Text(event_type.clone()));
        }
        // With an equality above, its index (whose entries are in position order) leads; the
        // unary `+` keeps the planner from choosing the time index and sorting instead.
        if let Some(since) = filter.since {
            narrow("+recorded_at >= ?", Value::Integer(millis(since)));
        }
        if let Some(until) = filter.until {
            narrow("+recorded_at < ?", Value::Integer(millis(until)));
        }
        if let Some(outcome) = filter.outcome {
            narrow("outcome = ?", Value::Text(outcome.as_str().to_owned()));
        }
        self.trail_page(&sql, &args, filter.ip.as_ref(), before, limit)
    }

    /// A page of the entries recorded in a time window (and from `filter.ip`), newest first,
    /// before `before`. The newest positions of the window are picked from `audit_by_time` alone
    /// (its rowid is the position), then only their rows are read: the cost grows with the
    /// entries in the window, never with the trail before or after it.
    fn window_page(
        &self,
        org: OrgId,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ProjectionError> {
        let since = filter.since.map_or(i64::MIN, millis);
        let until = filter.until.map_or(i64::MAX, millis);
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_trail WHERE position IN (\
                 SELECT position FROM audit_trail INDEXED BY audit_by_time \
                 WHERE org_id = ? AND recorded_at >= ? AND recorded_at < ? AND position < ? \
                 ORDER BY position DESC LIMIT ?) \
             AND org_id = ? ORDER BY position DESC"
        );
        let args = [Value::Text(org.to_string()), Value::Integer(since), Value::Integer(until)];
        let org_again = Value::Text(org.to_string());
        self.paged(
            &sql,
            |before, batch| {
                let mut all = args.to_vec();
                all.extend([Value::Integer(before), Value::Integer(batch), org_again.clone()]);
                all
            },
            filter.ip.as_ref(),
            before,
            limit,
        )
    }

    /// A page of a credential's uses, issued access tokens and coalesced denials, newest first,
    /// before position `before`: what incident response reads. Only `since`, `until`, `outcome` and
    /// `ip` of `filter` apply.
    pub fn uses(
        &self,
        id: CredentialId,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ProjectionError> {
        let types = usage::Event::TYPES.map(|_| "?").join(", ");
        let mut sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_trail WHERE credential_id = ? AND event_type IN ({types})");
        let mut args: Vec<Value> = vec![Value::Text(id.to_string())];
        args.extend(usage::Event::TYPES.iter().map(|t| Value::Text((*t).to_owned())));
        let mut narrow = |clause: &str, value: Value| {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.push(value);
        };
        if let Some(since) = filter.since {
            narrow("recorded_at >= ?", Value::Integer(millis(since)));
        }
        if let Some(until) = filter.until {
            narrow("recorded_at < ?", Value::Integer(millis(until)));
        }
        if let Some(outcome) = filter.outcome {
            narrow("outcome = ?", Value::Text(outcome.as_str().to_owned()));
        }
        self.trail_page(&sql, &args, filter.ip.as_ref(), before, limit)
    }

    /// The credential one of whose secret values, current or rolled away, has this digest:
    /// what incident response asks of a leaked value. Whatever its organization; the caller
    /// restricts.
    pub fn credential_by_secret(&self, digest: &TokenDigest) -> Result<Option<CredentialId>, ProjectionError> {
        let connection = self.reader()?;
        let id: Option<String> = connection
            .query_row(
                "SELECT credential_id FROM credential_secrets WHERE secret_hash = ?1",
                [digest.to_hex()],
                |row| row.get(0),
            )
            .optional()?;
        id.map(|id| CredentialId::parse(&id).map_err(|e| ProjectionError::Decode(e.to_string()))).transpose()
    }

    /// Every entry of an organization's trail about one credential, lifecycle and usage, oldest
    /// first: the timeline of an incident.
    pub fn credential_timeline(&self, org: OrgId, id: CredentialId) -> Result<Vec<AuditEntry>, ProjectionError> {
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_trail WHERE org_id = ?1 AND credential_id = ?2 ORDER BY position"
        ))?;
        let rows = statement.query_map([org.to_string(), id.to_string()], audit_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every use, issued access token and coalesced denial of an organization's credentials
    /// that passes `filter`, oldest first. Only `since`, `until` and `ip` of `filter` apply.
    pub fn usage_entries(&self, org: OrgId, filter: &AuditFilter) -> Result<Vec<AuditEntry>, ProjectionError> {
        let types = usage::Event::TYPES.map(|_| "?").join(", ");
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_trail WHERE org_id = ? AND event_type IN ({types})");
        let mut args: Vec<Value> = vec![Value::Text(org.to_string())];
        args.extend(usage::Event::TYPES.iter().map(|t| Value::Text((*t).to_owned())));
        if let Some(since) = filter.since {
            sql.push_str(" AND recorded_at >= ?");
            args.push(Value::Integer(millis(since)));
        }
        if let Some(until) = filter.until {
            sql.push_str(" AND recorded_at < ?");
            args.push(Value::Integer(millis(until)));
        }
        sql.push_str(" ORDER BY position");
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(&sql)?;
        let mut entries = Vec::new();
        // SQLite cannot test CIDR membership: the network is applied row by row.
        for entry in statement.query_map(params_from_iter(args), audit_entry)? {
            let entry = entry?;
            if filter.ip.as_ref().is_none_or(|network| from_network(&entry, network)) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Runs `sql` (a SELECT of [`AUDIT_COLUMNS`] with its WHERE clause open) newest first, before
    /// `before`, keeping the entries from `network`. SQLite cannot test CIDR membership, so with a
    /// network the rows are read in batches until the page is full or the trail is exhausted.
    fn trail_page(
        &self,
        sql: &str,
        args: &[Value],
        network: Option<&Cidr>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ProjectionError> {
        let sql = format!("{sql} AND position < ? ORDER BY position DESC LIMIT ?");
        self.paged(
            &sql,
            |before, batch| {
                let mut all = args.to_vec();
                all.extend([Value::Integer(before), Value::Integer(batch)]);
                all
            },
            network,
            before,
            limit,
        )
    }

    /// Runs `sql`, whose arguments `args(before, batch)` builds, page by page newest first, until
    /// `limit` entries from `network` are found or the rows run out. Each run must answer at most
    /// `batch` rows before position `before`, newest first.
    fn paged(
        &self,
        sql: &str,
        args: impl Fn(i64, i64) -> Vec<Value>,
        network: Option<&Cidr>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ProjectionError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let batch = if network.is_some() { limit.max(256) } else { limit };
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(sql)?;
        let mut page = Vec::with_capacity(limit);
        let mut before = before.map_or(i64::MAX, |b| b as i64);
        loop {
            let rows: Vec<AuditEntry> = statement
                .query_map(params_from_iter(args(before, batch as i64)), audit_entry)?
                .collect::<Result<_, _>>()?;
            let exhausted = rows.len() < batch;
            if let Some(last) = rows.last() {
                before = last.position as i64;
            }
            for entry in rows {
                if page.len() == limit {
                    return Ok(page);
                }
                if network.is_none_or(|network| from_network(&entry, network)) {
                    page.push(entry);
                }
            }
            if exhausted || page.len() == limit {
                return Ok(page);
            }
        }
    }

    /// Every row of every read model, table by table in a fixed order: what a rebuild must
    /// reproduce exactly.
    pub fn snapshot(&self) -> Result<Snapshot, ProjectionError> {
        let connection = self.reader()?;
        let tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut snapshot = Vec::new();
        for table in tables {
            let mut statement = connection.prepare_cached(&format!("SELECT * FROM {table} ORDER BY 1, 2"))?;
            let width = statement.column_count();
            let rows = statement
                .query_map([], |row| (0..width).map(|i| row.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>())?
                .collect::<Result<Vec<_>, _>>()?;
            snapshot.push((table, rows));
        }
        Ok(snapshot)
    }
}

/// One read of an environment's secrets.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretReadRow {
    pub position: u64,
    pub project_id: String,
    pub environment: String,
    pub credential_id: String,
    pub kind: String,
    pub version: u64,
    pub names: Vec<String>,
    pub ip: String,
    pub user_agent: Option<String>,
    /// Unix milliseconds.
    pub at: i64,
}

const SECRET_READ_COLUMNS: &str =
    "position, project_id, environment, credential_id, kind, version, names, ip, user_agent, at";

fn secret_read(row: &rusqlite::Row<'_>) -> rusqlite::Result<SecretReadRow> {
    let names: String = row.get(6)?;
    Ok(SecretReadRow {
        position: row.get::<_, i64>(0)? as u64,
        project_id: row.get(1)?,
        environment: row.get(2)?,
        credential_id: row.get(3)?,
        kind: row.get(4)?,
        version: row.get::<_, i64>(5)? as u64,
        names: serde_json::from_str(&names).unwrap_or_default(),
        ip: row.get(7)?,
        user_agent: row.get(8)?,
        at: row.get(9)?,
    })
}

impl Projections {
    /// Reads of an environment's secrets, newest first, before position `before` if given.
    pub fn secret_reads(
        &self,
        org: OrgId,
        project: ProjectId,
        environment: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<SecretReadRow>, ProjectionError> {
        let connection = self.reader()?;
        let sql = format!(
            "SELECT {SECRET_READ_COLUMNS} FROM secret_reads WHERE org_id = ?1 AND project_id = ?2 AND environment = ?3 \
             AND position < ?4 ORDER BY position DESC LIMIT ?5"
        );
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(
            rusqlite::params![
                org.to_string(),
                project.to_string(),
                environment,
                before.map_or(i64::MAX, |before| before as i64),
                limit as i64
            ],
            secret_read,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every read of secrets by a credential, oldest first.
    pub fn secret_reads_by(&self, credential: CredentialId) -> Result<Vec<SecretReadRow>, ProjectionError> {
        let connection = self.reader()?;
        let sql = format!("SELECT {SECRET_READ_COLUMNS} FROM secret_reads WHERE credential_id = ?1 ORDER BY position");
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map([credential.to_string()], secret_read)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
