//! Time travel: machine tokens as they were at a past instant or position, folded from the log
//! with the domain's own `evolve` — never read from the current read models, which only know
//! the present.

use std::collections::BTreeMap;

use credledger_domain::machine_token::{self, MachineToken};
use credledger_domain::usage;
use credledger_domain::{CredentialId, DomainEvent, OrgId};
use credledger_projections::queries::UsageSummary;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::problem::Problem;

/// A past moment of the ledger: a recorded time, or a position of the log.
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    Time(OffsetDateTime),
    Position(u64),
}

impl AsOf {
    /// `2026-11-25T10:00:00Z` or a position such as `1234`.
    pub fn parse(input: &str) -> Result<Self, Problem> {
        let input = input.trim();
        if let Ok(position) = input.parse::<u64>() {
            return Ok(Self::Position(position));
        }
        OffsetDateTime::parse(input, &Rfc3339).map(Self::Time).map_err(|_| {
            Problem::bad_request("invalid_query", "`asOf` takes an RFC 3339 time or a log position").with_field("asOf")
        })
    }

    fn includes(self, event: &credledger_store::RecordedEvent) -> bool {
        match self {
            Self::Time(at) => event.recorded_at <= at,
            Self::Position(position) => event.position <= position,
        }
    }

    /// The instant at which expiry is judged: the time asked for, or the time the position was
    /// recorded.
    fn instant(self, last_included: Option<OffsetDateTime>) -> OffsetDateTime {
        match self {
            Self::Time(at) => at,
            Self::Position(_) => last_included.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }
    }
}

/// Events read from the log per page.
const PAGE: usize = 2048;

/// Every machine token of the organization as of `as_of`, with its usage summary then, and the
/// instant that is.
pub async fn machine_tokens(
    app: &AppState,
    org: OrgId,
    as_of: AsOf,
) -> Result<(BTreeMap<CredentialId, (Box<MachineToken>, UsageSummary)>, OffsetDateTime), Problem> {
    let mut tokens: BTreeMap<CredentialId, (machine_token::State, UsageSummary)> = BTreeMap::new();
    let mut last_included = None;
    let head = app.store.head().await?;
    let mut next = 1;
    while next <= head {
        let page = app.store.read_all(next, PAGE).await?;
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        for event in page.iter().filter(|event| event.org_id == Some(org)) {
            if !as_of.includes(event) {
                continue;
            }
            last_included = Some(event.recorded_at);
            match DomainEvent::decode(&event.event_type, &event.payload) {
                Ok(DomainEvent::MachineToken(decoded)) => {
                    let Some(id) = event.stream.strip_prefix("mt-").and_then(|id| CredentialId::parse(id).ok()) else {
                        continue;
                    };
                    let entry = tokens.entry(id).or_default();
                    entry.0 = machine_token::evolve(std::mem::take(&mut entry.0), &decoded);
                }
                Ok(DomainEvent::Usage(usage::Event::CredentialUsed(used))) => {
                    if let Some((_, summary)) = tokens.get_mut(&used.credential_id) {
                        summary.last_used_at = Some(used.at);
                        summary.last_used_ip = Some(used.ip.clone());
                        summary.last_used_user_agent.clone_from(&used.user_agent);
                        summary.use_count += 1;
                    }
                }
                Ok(DomainEvent::Usage(usage::Event::CredentialAccessDenied(denied))) => {
                    if let Some((_, summary)) = tokens.get_mut(&denied.credential_id) {
                        summary.denied_count += u64::from(denied.count);
                    }
                }
                _ => {}
            }
        }
        if let AsOf::Position(position) = as_of
            && next > position
        {
            break;
        }
    }
    let tokens = tokens
        .into_iter()
        .filter_map(|(id, (state, usage))| match state {
            machine_token::State::Present(token) => Some((id, (token, usage))),
            machine_token::State::Absent => None,
        })
        .collect();
    Ok((tokens, as_of.instant(last_included)))
}
