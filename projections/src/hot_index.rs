//! The in-memory hot index: SHA-256 of a presented secret → the credential's view. Authentication
//! looks here and nowhere else, so the request path runs no SQL. The runner keeps it current from
//! the same events, right after each batch is committed to the read models.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use credledger_domain::CredentialId;
use credledger_domain::policy::{CredentialView, Presented};
use credledger_domain::token::TokenDigest;

use crate::credential::Credential;

#[derive(Debug, Default)]
pub struct HotIndex {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
#[allow(clippy::struct_field_names)] // "by_…" reads as what each map is keyed by.
struct Inner {
    by_secret: HashMap<TokenDigest, (CredentialId, Presented)>,
    by_id: HashMap<CredentialId, Entry>,
    /// OAuth2 client ids of service credentials.
    by_client_id: HashMap<String, CredentialId>,
}

#[derive(Debug)]
struct Entry {
    view: Arc<CredentialView>,
    current: TokenDigest,
    /// The rolled-away value still in its grace period, if any.
    in_grace: Option<TokenDigest>,
}

/// What a value that no longer authenticates maps to: it stays recognised, so presenting it is
/// refused as `revoked` (and recorded) instead of looking like an unknown token.
const RETIRED: Presented = Presented::Previous { valid_until: None };

impl HotIndex {
    /// The credential a presented secret belongs to, and which of its values it is.
    pub fn lookup(&self, digest: &TokenDigest) -> Option<(Arc<CredentialView>, Presented)> {
        let inner = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (id, presented) = inner.by_secret.get(digest)?;
        inner.by_id.get(id).map(|entry| (Arc::clone(&entry.view), *presented))
    }

    /// The current view of a credential, for checks that start from an id (e.g. access JWTs).
    pub fn view(&self, id: CredentialId) -> Option<Arc<CredentialView>> {
        let inner = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.by_id.get(&id).map(|entry| Arc::clone(&entry.view))
    }

    /// The service credential an OAuth2 client id names.
    pub fn client(&self, client_id: &str) -> Option<CredentialId> {
        let inner = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.by_client_id.get(client_id).copied()
    }

    /// How many credentials the index holds.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `credentials` more, so that loading an inventory of known size grows no
    /// table by doubling (which would leave up to half of it empty).
    pub(crate) fn reserve(&self, credentials: usize) {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.by_id.reserve(credentials);
        inner.by_secret.reserve(credentials);
    }

    /// Replaces what the index knows of these credentials.
    pub(crate) fn upsert<'a>(&self, credentials: impl IntoIterator<Item = &'a Credential>) {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for credential in credentials {
            inner.upsert(credential);
        }
    }

    /// Records a value the credential once had but that no longer authenticates (loaded from
    /// the read models at start-up).
    pub(crate) fn retire(&self, id: CredentialId, digest: TokenDigest) {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.by_secret.entry(digest).or_insert((id, RETIRED));
    }
}

impl Inner {
    fn upsert(&mut self, credential: &Credential) {
        let id = credential.id();
        let current = credential.current_secret();
        let previous = credential.previous_secret();
        if let Some(old) = self.by_id.get(&id) {
            let (old_current, old_grace) = (old.current, old.in_grace);
            for retired in [Some(old_current), old_grace].into_iter().flatten() {
                if retired != current {
                    self.by_secret.insert(retired, (id, RETIRED));
                }
            }
        }
        if let Some((digest, presented)) = previous {
            self.by_secret.insert(digest, (id, presented));
        }
        self.by_secret.insert(current, (id, Presented::Current));
        if let Some(client_id) = credential.client_id() {
            self.by_client_id.insert(client_id.as_str().to_owned(), id);
        }
        let entry = Entry { view: Arc::new(credential.view()), current, in_grace: previous.map(|(digest, _)| digest) };
        self.by_id.insert(id, entry);
    }
}
