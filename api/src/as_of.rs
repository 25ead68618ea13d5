//! Time travel: credentials, members and projects as they were at a past instant or position,
//! folded from the log with the domain's own `evolve` — never read from the current read models,
//! which only know the present.
//!
//! One loop reads the log ([`replay`]); each kind of credential is folded by the same generic
//! [`credentials`], and the organization (members, projects) from its own stream.

use std::collections::BTreeMap;
use std::ops::Bound;

use chrono::{DateTime, Utc};
use credledger_domain::organization::{self, Organization};
use credledger_domain::{CredentialId, DomainEvent, OrgId, ProjectId, usage};
use credledger_projections::queries::UsageSummary;
use credledger_store::RecordedEvent;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::command::{self, Aggregate};
use crate::problem::Problem;
use crate::views::Page;

/// A past moment of the ledger: a recorded time, or a position of the log.
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    Time(DateTime<Utc>),
    Position(u64),
}

impl AsOf {
    /// `2026-11-25T10:00:00Z` or a position such as `1234`.
    pub fn parse(input: &str) -> Result<Self, Problem> {
        let input = input.trim();
        if let Some(position) = crate::extract::position(input) {
            return Ok(Self::Position(position));
        }
        credledger_domain::time_format::parse(input).map(Self::Time).map_err(|_| {
            Problem::bad_request("invalid_query", "`asOf` takes an RFC 3339 time or a log position").with_field("asOf")
        })
    }

    fn includes(self, event: &RecordedEvent) -> bool {
        match self {
            Self::Time(at) => event.recorded_at <= at,
            Self::Position(position) => event.position <= position,
        }
    }
}

/// The `asOf` query parameter of a get or a list that has no other parameter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// As it was then: an RFC 3339 time or a log position, folded from the log.
    #[param(
        pattern = r"^([0-9]{1,19}|0[0-9]{19}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]{1}|1844674407370955161[0-4]|18446744073709551615|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
    )]
    pub as_of: Option<String>,
}

impl AsOfQuery {
    pub fn parse(&self) -> Result<Option<AsOf>, Problem> {
        self.as_of.as_deref().map(AsOf::parse).transpose()
    }
}

/// Events read from the log per page.
const PAGE: usize = 2048;

/// Hands every event of the organization recorded up to `as_of` to `apply`, decoded, in log
/// order, and answers the instant at which what was folded from them is judged (expiry): the
/// time asked for, or when the position asked for was recorded. A moment that is not in the
/// past is judged now, so that it gives the present state.
async fn replay(
    app: &AppState,
    org: OrgId,
    as_of: AsOf,
    mut apply: impl FnMut(&RecordedEvent, DomainEvent),
) -> Result<DateTime<Utc>, Problem> {
    let now = app.clock.now();
    let head = app.store.head().await?;
    let mut reached = None;
    let mut next = 1;
    while next <= head {
        let page = app.store.read_all(next, PAGE).await?;
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        for event in page.iter().filter(|event| as_of.includes(event)) {
            reached = Some(event.recorded_at);
            if event.org_id != Some(org) {
                continue;
            }
            // Types no fold needs (machine-name reservations, checkpoints) do not decode.
            if let Ok(decoded) = DomainEvent::decode(&event.event_type, &event.payload) {
                apply(event, decoded);
            }
        }
        if let AsOf::Position(position) = as_of
            && next > position
        {
            break;
        }
    }
    Ok(match as_of {
        AsOf::Time(at) => at.min(now),
        AsOf::Position(position) if position >= head => now,
        AsOf::Position(_) => reached.unwrap_or(DateTime::UNIX_EPOCH),
    })
}

/// A kind of credential [`credentials`] folds: an aggregate whose events [`DomainEvent`] carries
/// in one variant, each in a stream named `{kind}-{credential id}`.
pub trait Kind: Aggregate {
    fn pick(event: DomainEvent) -> Option<Self::Event>;
}

macro_rules! kind {
    ($($aggregate:ident => $variant:ident),* $(,)?) => {
        $(
            impl Kind for command::$aggregate {
                fn pick(event: DomainEvent) -> Option<Self::Event> {
                    match event {
                        DomainEvent::$variant(event) => Some(event),
                        _ => None,
                    }
                }
            }
        )*
    };
}

kind!(
    MachineToken => MachineToken,
    ServiceCredential => ServiceCredential,
    MachineIdentity => Machine,
    PersonalToken => PersonalToken,
);

/// Every credential of one kind of an organization as it was at a moment, with its usage then.
#[derive(Debug)]
pub struct Past<T> {
    pub credentials: BTreeMap<CredentialId, (T, UsageSummary)>,
    /// The instant at which their expiry is judged.
    pub then: DateTime<Utc>,
}

impl<T> Past<T> {
    /// One page of the credentials after `after`, in id order as the current lists page them:
    /// `view` shows a credential, or answers `None` for one a filter leaves out.
    pub fn page<V>(
        &self,
        after: Option<CredentialId>,
        limit: usize,
        mut view: impl FnMut(&T, &UsageSummary) -> Option<V>,
    ) -> Page<V> {
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for (id, (credential, usage)) in
            self.credentials.range((after.map_or(Bound::Unbounded, Bound::Excluded), Bound::Unbounded))
        {
            let Some(item) = view(credential, usage) else { continue };
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(item);
            last = Some(*id);
        }
        Page { items, next_cursor: last.filter(|_| more).map(|id| id.to_string()) }
    }
}

/// Every credential of kind `K` of the organization as of `as_of`, folded with `K`'s `evolve`.
pub async fn credentials<K: Kind>(app: &AppState, org: OrgId, as_of: AsOf) -> Result<Past<K::Present>, Problem> {
    let mut states: BTreeMap<CredentialId, (K::State, UsageSummary)> = BTreeMap::new();
    let then = replay(app, org, as_of, |recorded, event| match event {
        DomainEvent::Usage(used) => {
            if let Some((_, summary)) = states.get_mut(&used.credential_id()) {
                count(summary, &used);
            }
        }
        event => {
            let id = recorded.stream.split_once('-').and_then(|(_, id)| CredentialId::parse(id).ok());
            if let (Some(event), Some(id)) = (K::pick(event), id) {
                let (state, _) = states.entry(id).or_default();
                *state = K::evolve(std::mem::take(state), &event);
            }
        }
    })
    .await?;
    let credentials = states
        .into_iter()
        .filter_map(|(id, (state, usage))| K::present(state).map(|credential| (id, (credential, usage))))
        .collect();
    Ok(Past { credentials, then })
}

/// Adds a usage event to a summary as the usage projection does: an issued access token counts
/// as a use of the credential that obtained it.
fn count(summary: &mut UsageSummary, event: &usage::Event) {
    match event {
        usage::Event::CredentialUsed(usage::CredentialUsed { at, ip, user_agent, .. })
        | usage::Event::AccessTokenIssued(usage::AccessTokenIssued { at, ip, user_agent, .. }) => {
            summary.last_used_at = Some(*at);
            summary.last_used_ip = Some(ip.clone());
            summary.last_used_user_agent.clone_from(user_agent);
            summary.use_count += 1;
        }
        usage::Event::CredentialAccessDenied(denied) => summary.denied_count += u64::from(denied.count),
        // The request that read them counted as a use already.
        usage::Event::SecretsRead(_) => {}
    }
}

/// An organization as it was at a moment: its members and projects.
#[derive(Debug)]
pub struct PastOrganization {
    pub organization: Box<Organization>,
    /// When each project was created (the projects read model shows it; the aggregate does not
    /// keep it).
    pub project_created_at: BTreeMap<ProjectId, DateTime<Utc>>,
}

/// The organization as of `as_of`, folded from its own stream with `organization::evolve`;
/// `None` before it existed.
pub async fn organization(app: &AppState, org: OrgId, as_of: AsOf) -> Result<Option<PastOrganization>, Problem> {
    let mut state = organization::State::Absent;
    let mut project_created_at = BTreeMap::new();
    for recorded in app.store.read_stream(&organization::stream(org), 0).await? {
        if !as_of.includes(&recorded) {
            continue;
        }
        let Ok(DomainEvent::Organization(event)) = DomainEvent::decode(&recorded.event_type, &recorded.payload) else {
            continue;
        };
        if let organization::Event::ProjectCreated(created) = &event {
            project_created_at.insert(created.project_id, recorded.occurred_at);
        }
        state = organization::evolve(state, &event);
    }
    Ok(match state {
        organization::State::Present(organization) => Some(PastOrganization { organization, project_created_at }),
        organization::State::Absent => None,
    })
}
