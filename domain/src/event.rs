//! Every event type of the ledger, decoded from its recorded type name and payload.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{machine_identity, machine_token, organization, personal_token, secrets, service_credential, usage};

/// The version of every payload schema this release writes. A payload whose schema changes
/// gets a new version and an upcaster here.
pub const SCHEMA_VERSION: u32 = 1;

/// A recorded event of any aggregate.
// Decoded events live for one projection step; boxing the larger variants would cost an
// allocation per event for no memory that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    Organization(organization::Event),
    PersonalToken(personal_token::Event),
    MachineToken(machine_token::Event),
    ServiceCredential(service_credential::Event),
    Machine(machine_identity::Event),
    Usage(usage::Event),
    Secrets(secrets::Event),
}

/// An event type this release does not know, or a payload that does not match its type.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The type is written by a newer release or by a component this one does not have;
    /// readers skip it.
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    /// The payload does not match the schema of its type: the log or the writer is broken.
    #[error("payload of `{event_type}` does not match its schema: {source}")]
    BadPayload { event_type: String, source: serde_json::Error },
}

impl DomainEvent {
    pub fn decode(event_type: &str, payload: &serde_json::Value) -> Result<Self, DecodeError> {
        if organization::Event::TYPES.contains(&event_type) {
            decode_as(event_type, payload).map(Self::Organization)
        } else if personal_token::Event::TYPES.contains(&event_type) {
            decode_as(event_type, payload).map(Self::PersonalToken)
        } else if machine_token::Event::TYPES.contains(&event_type) {
            decode_as(event_type, payload).map(Self::MachineToken)
        } else if service_credential::Event::TYPES.contains(&event_type) {
            decode_as(event_type, payload).map(Self::ServiceCredential)
        } else if machine_identity::Event::TYPES.contains(&event_type) {
            decode_as(event_type, payload).map(Self::Machine)
        } else if usage::Event::TYPES.contains(&event_type) {
            decode_as(event_type, payload).map(Self::Usage)
        } else if secrets::Event::TYPES.contains(&event_type) {
            decode_as(event_type, payload).map(Self::Secrets)
        } else {
            Err(DecodeError::UnknownType(event_type.to_owned()))
        }
    }
}

/// Deserializes the adjacently tagged `{"type", "payload"}` form straight from the borrowed
/// payload: every projected event passes here, and copying its payload into a tagged JSON value
/// first cost more than the rest of decoding.
fn decode_as<E: DeserializeOwned>(event_type: &str, payload: &serde_json::Value) -> Result<E, DecodeError> {
    let tag = serde_json::Value::String(event_type.to_owned());
    let entries = [("type", &tag), ("payload", payload)];
    E::deserialize(serde::de::value::MapDeserializer::<_, serde_json::Error>::new(entries.into_iter()))
        .map_err(|source| DecodeError::BadPayload { event_type: event_type.to_owned(), source })
}

/// Splits an aggregate's event into the type name and payload the store records.
pub fn encode<E: Serialize>(event: &E) -> Result<(String, serde_json::Value), serde_json::Error> {
    if let serde_json::Value::Object(mut map) = serde_json::to_value(event)?
        && let Some(serde_json::Value::String(event_type)) = map.remove("type")
    {
        let payload = map.remove("payload").unwrap_or(serde_json::Value::Null);
        return Ok((event_type, payload));
    }
    Err(serde::ser::Error::custom("an event serialises as {\"type\", \"payload\"}"))
}
