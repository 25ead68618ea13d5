//! Running a command: load the aggregate by folding its stream, let its decider decide, append
//! the events with the stream's version as the expected one, and wait until the projections have
//! applied them so that the next request (on this node) sees the result.
//!
//! A concurrent append to the same stream makes the append fail; the command is then decided
//! again on the new state, a few times, before the caller gets 409.

use chrono::{DateTime, Utc};
use credledger_domain::{
    Actor, DomainError, EventId, OrgId, RequestMeta, SCHEMA_VERSION, event, machine_token, organization, personal_token,
};
use credledger_domain::{machine_identity, secrets, service_credential};
use credledger_store::{ExpectedVersion, NewEvent, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::problem::Problem;

/// How many times a command is decided again after losing a race for its stream.
const ATTEMPTS: usize = 5;

/// How long a recorded command waits for the read models to apply it before it answers anyway.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An aggregate's decider, as plain functions.
pub trait Aggregate {
    type State: Default;
    type Event: Serialize + DeserializeOwned;
    type Command: Clone;
    /// The aggregate once it exists.
    type Present;
    /// What a 404 calls it.
    const NAME: &'static str;

    /// The aggregate, if its stream created it.
    fn present(state: Self::State) -> Option<Self::Present>;

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
    fn decide(state: &Self::State, command: Self::Command, now: DateTime<Utc>)
    -> Result<Vec<Self::Event>, DomainError>;
}

/// Declares a marker type for a domain module's decider: every aggregate module has the same
/// `State`, `Event`, `Command`, `Context { now }`, `decide` and `evolve`.
macro_rules! aggregate {
    ($($name:ident => $module:ident :: $present:ident, $what:literal);* $(;)?) => {
        $(
            #[derive(Debug)]
            pub struct $name;

            impl Aggregate for $name {
                type State = $module::State;
                type Event = $module::Event;
                type Command = $module::Command;
                type Present = Box<$module::$present>;
                const NAME: &'static str = $what;

                fn present(state: Self::State) -> Option<Self::Present> {
                    match state {
                        $module::State::Present(present) => Some(present),
                        $module::State::Absent => None,
                    }
                }

                fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
                    $module::evolve(state, event)
                }

                fn decide(
                    state: &Self::State,
                    command: Self::Command,
                    now: DateTime<Utc>,
                ) -> Result<Vec<Self::Event>, DomainError> {
                    $module::decide(state, command, &$module::Context { now })
                }
            }
        )*
    };
}

aggregate!(
    Organization => organization::Organization, "organization";
    PersonalToken => personal_token::PersonalToken, "personal token";
    MachineToken => machine_token::MachineToken, "machine token";
    ServiceCredential => service_credential::ServiceCredential, "service credential";
    MachineIdentity => machine_identity::Machine, "machine";
    Secrets => secrets::Secrets, "secrets";
);

/// Who runs a command, and how its events are identified.
#[derive(Debug, Clone)]
pub struct Origin {
    pub actor: Actor,
    pub request: Option<RequestMeta>,
    /// `None`: fresh v7 ids. `Some(seed)`: ids derived from the seed, so that a background job
    /// that runs the same command twice for the same cause (after a restart, or on two nodes)
    /// writes it once: the store treats the second append as a retry.
    pub idempotency_seed: Option<String>,
}

/// The state after a command, and where its events landed (`None` when it decided nothing).
#[derive(Debug)]
pub struct Outcome<S> {
    pub state: S,
    pub position: Option<u64>,
}

/// Loads an aggregate's state without changing it.
pub async fn load<A: Aggregate>(app: &AppState, stream: &str) -> Result<(A::State, Option<u64>), Problem> {
    let recorded = app.store.read_stream(stream, 0).await?;
    let mut state = A::State::default();
    for event in &recorded {
        let decoded: A::Event = decode(&event.event_type, &event.payload)?;
        state = A::evolve(state, &decoded);
    }
    Ok((state, recorded.last().map(|event| event.version)))
}

fn decode<E: DeserializeOwned>(event_type: &str, payload: &serde_json::Value) -> Result<E, Problem> {
    let tagged = serde_json::json!({ "type": event_type, "payload": payload });
    serde_json::from_value(tagged).map_err(|error| Problem::internal("a recorded event does not decode", &error))
}

pub async fn execute<A: Aggregate>(
    app: &AppState,
    stream: &str,
    org_id: Option<OrgId>,
    origin: &Origin,
    command: A::Command,
) -> Result<Outcome<A::State>, Problem> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (state, version) = load::<A>(app, stream).await?;
        let now = app.clock.now();
        let events = A::decide(&state, command.clone(), now)?;
        if events.is_empty() {
            return Ok(Outcome { state, position: None });
        }
        let mut new = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let (event_type, payload) =
                event::encode(event).map_err(|error| Problem::internal("encoding an event", &error))?;
            new.push(NewEvent {
                event_id: event_id(origin, stream, index),
                event_type,
                schema_version: SCHEMA_VERSION,
                org_id,
                occurred_at: now,
                actor: origin.actor.clone(),
                request: origin.request.clone(),
                payload,
            });
        }
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        match app.store.append(stream, expected, new).await {
            Ok(appended) => {
                wait_applied(app, appended.last_position).await?;
                let state = events.iter().fold(state, A::evolve);
                return Ok(Outcome { state, position: Some(appended.last_position) });
            }
            Err(StoreError::WrongExpectedVersion { .. }) if attempt < ATTEMPTS => {
                metrics::counter!("credledger_command_retries_total").increment(1);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Waits until the read models have applied a recorded command's events, for a bounded time:
/// when their storage fails the command is answered anyway, saying truthfully that it was
/// recorded, so that nobody repeats it.
pub(crate) async fn wait_applied(app: &AppState, position: u64) -> Result<(), Problem> {
    match tokio::time::timeout(APPLY_WAIT, app.projections.wait_for(position)).await {
        Ok(waited) => Ok(waited?),
        Err(_) => Err(Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "recorded_not_applied",
            format!(
                "the command was recorded (position {position}), but the read models have not applied it yet; \
                 do not repeat it: its effects show once they catch up"
            ),
        )
        .retry_after(5)),
    }
}

/// Runs a command on an aggregate that must exist afterwards, and returns it (404 otherwise).
pub async fn execute_present<A: Aggregate>(
    app: &AppState,
    stream: &str,
    org_id: Option<OrgId>,
    origin: &Origin,
    command: A::Command,
) -> Result<A::Present, Problem> {
    let outcome = execute::<A>(app, stream, org_id, origin, command).await?;
    A::present(outcome.state).ok_or_else(|| Problem::not_found(A::NAME))
}

fn event_id(origin: &Origin, stream: &str, index: usize) -> EventId {
    match &origin.idempotency_seed {
        None => EventId::from_uuid(uuid::Uuid::now_v7()),
        Some(seed) => {
            let digest = Sha256::digest(format!("{seed}\u{0}{stream}\u{0}{index}").as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            EventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
        }
    }
}
