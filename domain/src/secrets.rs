//! The secrets of one environment of a project: a set of `NAME=value` pairs, versioned as a
//! whole. Every change makes a new version with its author (the event's actor), time and
//! message. The log never holds a value in the clear: each version carries the set sealed with
//! the environment's data key (itself wrapped by the server's master key, in the first version),
//! the names, and a keyed digest of each value, so history can say which names changed without
//! revealing what they hold. Sealing and digests are made outside the domain (they need keys and
//! random bytes); the decider judges versions and names.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::names::Slug;
use crate::{OrgId, ProjectId};

/// Longest secret name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most names in one environment.
pub const MAX_NAMES: usize = 1000;

/// The stream of an environment's versions.
pub fn stream(project: ProjectId, environment: &Slug) -> String {
    format!("secrets-{project}-{environment}")
}

/// A secret's name: `[A-Z_][A-Z0-9_]*`, at most 256 bytes, so that it is a valid environment
/// variable name wherever the set is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(name: &str) -> Result<Self, SecretError> {
        let mut bytes = name.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_uppercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if first_ok && rest_ok && name.len() <= MAX_NAME_BYTES {
            Ok(Self(name.to_owned()))
        } else {
            Err(SecretError::InvalidName(name.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretName {
    type Error = SecretError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SecretName> for String {
    fn from(value: SecretName) -> Self {
        value.0
    }
}

impl std::fmt::Display for SecretName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a set of secrets cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("`{0}` is not a secret name: use A-Z, 0-9 and _, not starting with a digit, at most 256 bytes")]
    InvalidName(String),
    #[error("the value of `{0}` is longer than 65536 bytes")]
    ValueTooLong(String),
    #[error("an environment holds at most 1000 secrets")]
    TooManyNames,
}

impl SecretError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "invalid_secret_name",
            Self::ValueTooLong(_) => "secret_value_too_long",
            Self::TooManyNames => "too_many_secrets",
        }
    }
}

/// A set of secrets, checked: valid names, values within bounds, at most [`MAX_NAMES`].
pub fn check_set(set: &BTreeMap<SecretName, String>) -> Result<(), SecretError> {
    if set.len() > MAX_NAMES {
        return Err(SecretError::TooManyNames);
    }
    match set.iter().find(|(_, value)| value.len() > MAX_VALUE_BYTES) {
        Some((name, _)) => Err(SecretError::ValueTooLong(name.to_string())),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Event {
    SecretsVersionCreated(VersionCreated),
}

impl Event {
    pub const TYPES: [&'static str; 1] = ["SecretsVersionCreated"];
}

/// A new version of an environment's set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionCreated {
    pub org_id: OrgId,
    pub project_id: ProjectId,
    pub environment: Slug,
    /// From 1.
    pub version: u64,
    /// Each name of the set, with a keyed digest of its value (hex): equal digests, equal values.
    pub digests: BTreeMap<SecretName, String>,
    /// Names added or whose value changed since the previous version.
    pub changed: Vec<SecretName>,
    /// Names of the previous version that this one no longer holds.
    pub removed: Vec<SecretName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The environment's data key, wrapped by the master key (base64): in the first version only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key: Option<String>,
    /// The whole set, sealed with the data key (base64 of nonce and ciphertext).
    pub sealed: String,
    #[serde(with = "crate::time_format")]
    pub at: DateTime<Utc>,
}

/// An environment's secrets as the log has them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Absent,
    Present(Box<Secrets>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    pub version: u64,
    pub digests: BTreeMap<SecretName, String>,
    /// The wrapped data key of the first version.
    pub data_key: String,
    pub sealed: String,
}

#[derive(Debug, Clone)]
pub enum Command {
    /// Store a new version of the set. `expected_version` (0: no version yet) refuses the
    /// change if someone else changed the set first; `data_key` is used when there is no
    /// version yet.
    CreateVersion {
        org_id: OrgId,
        project_id: ProjectId,
        environment: Slug,
        expected_version: Option<u64>,
        digests: BTreeMap<SecretName, String>,
        sealed: String,
        data_key: String,
        message: Option<String>,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
}

pub fn decide(state: &State, command: Command, context: &Context) -> Result<Vec<Event>, DomainError> {
    let Command::CreateVersion {
        org_id,
        project_id,
        environment,
        expected_version,
        digests,
        sealed,
        data_key,
        message,
    } = command;
    let (current, previous) = match state {
        State::Absent => (0, None),
        State::Present(secrets) => (secrets.version, Some(&secrets.digests)),
    };
    if let Some(expected) = expected_version
        && expected != current
    {
        return Err(DomainError::StaleVersion { expected, actual: current });
    }
    let empty = BTreeMap::new();
    let before = previous.unwrap_or(&empty);
    let changed: Vec<SecretName> = digests
        .iter()
        .filter(|(name, digest)| before.get(*name) != Some(*digest))
        .map(|(name, _)| name.clone())
        .collect();
    let removed: Vec<SecretName> = before.keys().filter(|name| !digests.contains_key(*name)).cloned().collect();
    if previous.is_some() && changed.is_empty() && removed.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Event::SecretsVersionCreated(VersionCreated {
        org_id,
        project_id,
        environment,
        version: current + 1,
        digests,
        changed,
        removed,
        message,
        data_key: previous.is_none().then_some(data_key),
        sealed,
        at: context.now,
    })])
}

pub fn evolve(state: State, event: &Event) -> State {
    let Event::SecretsVersionCreated(created) = event;
    let data_key = match state {
        State::Present(secrets) => secrets.data_key,
        State::Absent => created.data_key.clone().unwrap_or_default(),
    };
    State::Present(Box::new(Secrets {
        version: created.version,
        digests: created.digests.clone(),
        data_key,
        sealed: created.sealed.clone(),
    }))
}
