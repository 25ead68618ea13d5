//! A credential of any kind as the read models and the hot index see it: the domain's aggregate
//! state, and the authentication view derived from it.

use credledger_domain::machine_identity::{self, Machine};
use credledger_domain::machine_token::{self, MachineToken};
use credledger_domain::personal_token::{self, PersonalToken};
use credledger_domain::policy::{CredentialView, Presented};
use credledger_domain::service_credential::{self, ServiceCredential};
use credledger_domain::token::TokenDigest;
use credledger_domain::values::{Conditions, Scopes};
use credledger_domain::{CredentialId, CredentialKind, Status};
use serde::{Deserialize, Serialize};

/// The aggregate state of one credential, stored as JSON in its inventory row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "state", rename_all = "snake_case")]
pub enum Credential {
    PersonalToken(Box<PersonalToken>),
    MachineToken(Box<MachineToken>),
    ServiceCredential(Box<ServiceCredential>),
    Machine(Box<Machine>),
}

impl Credential {
    pub fn id(&self) -> CredentialId {
        match self {
            Self::PersonalToken(t) => t.id,
            Self::MachineToken(t) => t.id,
            Self::ServiceCredential(c) => c.id,
            Self::Machine(m) => m.id,
        }
    }

    pub fn kind(&self) -> CredentialKind {
        match self {
            Self::PersonalToken(_) => CredentialKind::PersonalToken,
            Self::MachineToken(_) => CredentialKind::MachineToken,
            Self::ServiceCredential(_) => CredentialKind::ServiceCredential,
            Self::Machine(_) => CredentialKind::Machine,
        }
    }

    pub fn view(&self) -> CredentialView {
        match self {
            Self::PersonalToken(t) => CredentialView {
                id: t.id,
                kind: CredentialKind::PersonalToken,
                org_id: t.org_id,
                owner: t.member_id,
                project_id: None,
                environment_hint: None,
                status: t.status,
                expires_at: t.expires_at,
                scopes: Scopes::all(),
                conditions: Conditions::none(),
                server_admin: t.server_admin,
            },
            Self::MachineToken(t) => CredentialView {
                id: t.id,
                kind: CredentialKind::MachineToken,
                org_id: Some(t.org_id),
                owner: Some(t.owner),
                project_id: t.project_id,
                environment_hint: Some(t.environment_hint.to_string()),
                status: t.status,
                expires_at: t.expires_at,
                scopes: t.scopes.clone(),
                conditions: t.conditions.clone(),
                server_admin: false,
            },
            Self::ServiceCredential(c) => CredentialView {
                id: c.id,
                kind: CredentialKind::ServiceCredential,
                org_id: Some(c.org_id),
                owner: Some(c.owner),
                project_id: None,
                environment_hint: None,
                status: c.status,
                expires_at: c.expires_at,
                scopes: c.scopes.clone(),
                conditions: c.conditions.clone(),
                server_admin: false,
            },
            // Machines are pull-only: whatever they ask for, they read.
            Self::Machine(m) => CredentialView {
                id: m.id,
                kind: CredentialKind::Machine,
                org_id: Some(m.org_id),
                owner: Some(m.owner),
                project_id: Some(m.project_id),
                environment_hint: Some(m.environment.to_string()),
                status: m.status,
                expires_at: None,
                scopes: Scopes::read_only(),
                conditions: m.conditions.clone(),
                server_admin: false,
            },
        }
    }

    /// The secret values that authenticate (or are recognised as rolled away) right now.
    pub fn current_secret(&self) -> TokenDigest {
        match self {
            Self::PersonalToken(t) => t.secret_hash,
            Self::MachineToken(t) => t.secret_hash,
            Self::ServiceCredential(c) => c.secret_hash,
            // A machine has no secret the server knows: index it by a digest of its public key,
            // which no bearer value can ever hash to.
            Self::Machine(m) => TokenDigest::from_bytes(*m.public_key.as_bytes()),
        }
    }

    /// The value replaced by the last roll, with how long it keeps working.
    pub fn previous_secret(&self) -> Option<(TokenDigest, Presented)> {
        match self {
            Self::PersonalToken(_) | Self::Machine(_) => None,
            Self::MachineToken(t) => t.previous_secret,
            Self::ServiceCredential(c) => c.previous_secret,
        }
        .map(|previous| (previous.secret_hash, Presented::Previous { valid_until: Some(previous.valid_until) }))
    }

    pub fn status(&self) -> Status {
        match self {
            Self::PersonalToken(t) => t.status,
            Self::MachineToken(t) => t.status,
            Self::ServiceCredential(c) => c.status,
            Self::Machine(m) => m.status,
        }
    }

    /// The OAuth2 client id, for service credentials.
    pub fn client_id(&self) -> Option<&credledger_domain::token::ClientId> {
        match self {
            Self::ServiceCredential(c) => Some(&c.client_id),
            _ => None,
        }
    }

    pub(crate) fn from_machine_token(state: machine_token::State) -> Option<Self> {
        match state {
            machine_token::State::Present(token) => Some(Self::MachineToken(token)),
            machine_token::State::Absent => None,
        }
    }

    pub(crate) fn from_service_credential(state: service_credential::State) -> Option<Self> {
        match state {
            service_credential::State::Present(credential) => Some(Self::ServiceCredential(credential)),
            service_credential::State::Absent => None,
        }
    }

    pub(crate) fn from_machine(state: machine_identity::State) -> Option<Self> {
        match state {
            machine_identity::State::Present(machine) => Some(Self::Machine(machine)),
            machine_identity::State::Absent => None,
        }
    }

    pub(crate) fn from_personal_token(state: personal_token::State) -> Option<Self> {
        match state {
            personal_token::State::Present(token) => Some(Self::PersonalToken(token)),
            personal_token::State::Absent => None,
        }
    }
}
