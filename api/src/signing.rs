//! The server's access-token signing keys: Ed25519, kept parsed in memory, persisted in the data
//! directory (mode 0600), published as a JWKS.
//!
//! Tokens are signed directly with the parsed key (DESIGN.md §10: no per-request key parsing);
//! they are verified with `jsonwebtoken`, which checks the algorithm (EdDSA only), the `kid`, the
//! signature, `exp`/`nbf` with 30 s of leeway, `iss` and `aud`. After a rotation the old key stays
//! published, and keeps verifying, until every token it signed has expired.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::{Signer as _, SigningKey};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How long an access token lives.
pub const ACCESS_TOKEN_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;
/// The audience of every access token: this API.
pub const AUDIENCE: &str = "credledger-api";

/// Why the keys could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("signing key file {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("the system's random source failed: {0}")]
    Random(getrandom::Error),
}

/// Why a presented JWT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token's algorithm is not EdDSA")]
    Algorithm,
    #[error("the access token names an unknown key")]
    UnknownKey,
    #[error("the access token's signature does not verify")]
    Signature,
    #[error("the access token has expired or is not yet valid")]
    Expired,
    #[error("the access token was issued for another issuer or audience")]
    WrongAudience,
}

impl JwtError {
    pub const fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_token",
            Self::Algorithm => "unsupported_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "bad_signature",
            Self::Expired => "token_expired",
            Self::WrongAudience => "wrong_audience",
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The credential the token was issued to.
    pub sub: String,
    pub aud: String,
    pub org: String,
    /// Space-separated scopes.
    pub scope: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The kind of credential: `service_credential` or `machine`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Machine tokens: the project, environment and machine they are scoped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    kid: String,
    /// The 32-byte Ed25519 seed, hex.
    seed: String,
    #[serde(with = "credledger_domain::time_format")]
    created_at: DateTime<Utc>,
    /// When a newer key replaced it; `None` for the current key.
    #[serde(with = "credledger_domain::time_format::option")]
    retired_at: Option<DateTime<Utc>>,
}

struct Key {
    stored: StoredKey,
    signing: SigningKey,
    decoding: DecodingKey,
    x: String,
}

/// What tells one version of the key file from another: every save renames a new file over the
/// old one, so its inode changes even when the clock's granularity hides the modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self { inode, len: meta.len(), modified: meta.modified().ok() }
    }
}

struct KeySet {
    current: Arc<Key>,
    by_kid: HashMap<String, Arc<Key>>,
    /// Which version of the file the keys were read from: another node sharing the file (several
    /// servers on one ledger) that rotates the keys replaces it, and this node reloads.
    stamp: Option<Stamp>,
}

/// The signing keys; cheap to clone.
#[derive(Clone)]
pub struct SigningKeys {
    path: Arc<PathBuf>,
    issuer: Arc<str>,
    keys: Arc<RwLock<KeySet>>,
    /// When the file was last checked for another node's rotation (Unix seconds).
    checked_at: Arc<AtomicI64>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The JWKS document (RFC 7517) of the published keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
}

impl SigningKeys {
    /// Loads the keys from `path`, creating a first key (and the file, mode 0600) if missing.
    pub fn load_or_create(path: &Path, issuer: &str, now: DateTime<Utc>) -> Result<Self, KeyError> {
        let (stored, stamp) = match read(path) {
            Ok(read) => read,
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                create(path, &[new_key(now)?])?;
                // Another node sharing the file may have created it first: its keys are the ones.
                read(path)?
            }
            Err(error) => return Err(error),
        };
        let set = key_set(path, stored, stamp)?;
        Ok(Self {
            path: Arc::new(path.to_owned()),
            issuer: Arc::from(issuer),
            keys: Arc::new(RwLock::new(set)),
            checked_at: Arc::new(AtomicI64::new(now.timestamp())),
        })
    }

    /// Reloads the file if another node sharing it rotated the keys since it was read. A file
    /// that cannot be read keeps the keys in memory (and says so in the log).
    fn refresh(&self) {
        let Ok(meta) = std::fs::metadata(&*self.path) else { return };
        if Some(Stamp::of(&meta)) == self.read().stamp {
            return;
        }
        match read(&self.path).and_then(|(stored, stamp)| key_set(&self.path, stored, stamp)) {
            Ok(set) => {
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = set;
                tracing::info!(path = %self.path.display(), "signing keys reloaded after a rotation elsewhere");
            }
            Err(error) => tracing::warn!(%error, "the signing key file changed but cannot be read"),
        }
    }

    /// [`Self::refresh`] at most once a second: the price of noticing another node's rotation
    /// on the token-issuing path.
    fn refresh_now_and_then(&self) {
        let now = Utc::now().timestamp();
        if self.checked_at.swap(now, Ordering::Relaxed) != now {
            self.refresh();
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs claims with the current key: `base64url(header).base64url(claims).base64url(sig)`.
    pub fn sign(&self, claims: &Claims) -> String {
        self.refresh_now_and_then();
        let key = Arc::clone(&self.read().current);
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": key.stored.kid });
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default()));
        let signature = key.signing.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        token
    }

    /// Verifies a presented token at `now` (the server's clock) and returns its claims.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(JwtError::Algorithm);
        }
        let kid = header.kid.ok_or(JwtError::UnknownKey)?;
        let known = self.read().by_kid.get(&kid).cloned();
        // Unknown: perhaps minted by another node with a key it rotated in since this one read
        // the file. A `stat` tells; the file is read again only when it did change.
        let key = if let Some(key) = known {
            key
        } else {
            self.refresh();
            self.read().by_kid.get(&kid).cloned().ok_or(JwtError::UnknownKey)?
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[&*self.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Times are checked against the server's clock below, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                match error.kind() {
                    ErrorKind::InvalidSignature => JwtError::Signature,
                    ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => JwtError::Expired,
                    ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => JwtError::WrongAudience,
                    ErrorKind::InvalidAlgorithm => JwtError::Algorithm,
                    _ => JwtError::Malformed,
                }
            })?;
        let (now, leeway) = (now.timestamp(), LEEWAY_SECONDS as i64);
        if claims.exp + leeway <= now || claims.nbf - leeway > now {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }

    /// The published keys: the current one, and retired ones whose tokens may not have expired.
    pub fn jwks(&self) -> Jwks {
        self.refresh();
        let set = self.read();
        let mut keys: Vec<&Arc<Key>> = set.by_kid.values().collect();
        keys.sort_by_key(|key| std::cmp::Reverse(key.stored.created_at));
        Jwks {
            keys: keys
                .into_iter()
                .map(|key| Jwk {
                    kty: "OKP",
                    crv: "Ed25519",
                    x: key.x.clone(),
                    kid: key.stored.kid.clone(),
                    alg: "EdDSA",
                    key_use: "sig",
                })
                .collect(),
        }
    }

    /// Makes a new key current. The old one keeps verifying until its last token has expired;
    /// keys retired longer ago than that are dropped. Returns the new key's id.
    pub fn rotate(&self, now: DateTime<Utc>) -> Result<String, KeyError> {
        // One rotation at a time among the nodes sharing the file, each starting from the file as
        // the last one left it; the lock is released when `_exclusive` is dropped.
        let _exclusive = lock_beside(&self.path)?;
        self.refresh();
        let mut set = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = new_key(now)?;
        let kid = fresh.kid.clone();
        let horizon = now - ACCESS_TOKEN_LIFETIME - TimeDelta::seconds(LEEWAY_SECONDS as i64);
        let mut stored: Vec<StoredKey> = set
            .by_kid
            .values()
            .map(|key| {
                let mut stored = key.stored.clone();
                stored.retired_at.get_or_insert(now);
                stored
            })
            .filter(|stored| stored.retired_at.is_none_or(|at| at > horizon))
            .collect();
        stored.push(fresh);
        save(&self.path, &stored)?;
        let meta =
            std::fs::metadata(&*self.path).map_err(|source| KeyError::Io { path: self.path.to_path_buf(), source })?;
        *set = key_set(&self.path, stored, Stamp::of(&meta))?;
        Ok(kid)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn new_key(now: DateTime<Utc>) -> Result<StoredKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyError::Random)?;
    let public = SigningKey::from_bytes(&seed).verifying_key();
    // RFC 7638-style: a short, stable name derived from the public key.
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public.as_bytes())[..12]);
    Ok(StoredKey { kid, seed: hex::encode(seed), created_at: now, retired_at: None })
}

fn key_set(path: &Path, stored: Vec<StoredKey>, stamp: Stamp) -> Result<KeySet, KeyError> {
    let damaged = |reason: &str| KeyError::Damaged { path: path.to_owned(), reason: reason.to_owned() };
    let mut by_kid = HashMap::new();
    let mut current = None;
    for stored in stored {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&stored.seed, &mut seed).map_err(|_| damaged("a seed is not 32 bytes of hex"))?;
        let signing = SigningKey::from_bytes(&seed);
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let decoding = DecodingKey::from_ed_components(&x).map_err(|_| damaged("a public key does not parse"))?;
        let is_current = stored.retired_at.is_none();
        let key = Arc::new(Key { stored, signing, decoding, x });
        if is_current {
            current = Some(Arc::clone(&key));
        }
        by_kid.insert(key.stored.kid.clone(), key);
    }
    let current = current.ok_or_else(|| damaged("no current key"))?;
    Ok(KeySet { current, by_kid, stamp: Some(stamp) })
}

/// The keys in the file and the stamp of the very file they were read from (taken from the open
/// handle, so a rename between the read and a `stat` cannot pair new keys with an old stamp).
fn read(path: &Path) -> Result<(Vec<StoredKey>, Stamp), KeyError> {
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let stamp = Stamp::of(&file.metadata().map_err(io)?);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
    let stored = serde_json::from_slice(&bytes)
        .map_err(|e| KeyError::Damaged { path: path.to_owned(), reason: e.to_string() })?;
    Ok((stored, stamp))
}

/// An exclusive lock on `PATH.lock` (created if missing), held until the file is dropped.
fn lock_beside(path: &Path) -> Result<std::fs::File, KeyError> {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let lock_path = path.with_file_name(format!("{name}.lock"));
    let io = |source| KeyError::Io { path: lock_path.clone(), source };
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

/// Writes a new key file unless one exists (another node sharing it may be creating it too).
fn create(path: &Path, keys: &[StoredKey]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    let bytes = serde_json::to_vec_pretty(keys)
        .map_err(|e| KeyError::Damaged { path: path.to_owned(), reason: e.to_string() })?;
    let temporary = write_private_sibling(path, &bytes).map_err(io)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => Err(io(error)),
        _ => Ok(()),
    }
}

fn save(path: &Path, keys: &[StoredKey]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.to_owned(), source };
    let bytes = serde_json::to_vec_pretty(keys)
        .map_err(|e| KeyError::Damaged { path: path.to_owned(), reason: e.to_string() })?;
    // Write a sibling file and rename it over the old one, so a crash never leaves half a key.
    let temporary = write_private_sibling(path, &bytes).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)?;
    Ok(())
}

/// Writes `bytes` to a new file beside `path` (named after it, this process and a random number,
/// so that nodes sharing the directory never write the same one), readable by its owner only
/// (0600) and synced, and returns its path: the first half of replacing a key file atomically.
pub(crate) fn write_private_sibling(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut unique = [0u8; 4];
    getrandom::fill(&mut unique).map_err(std::io::Error::other)?;
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!("{name}.{}-{}.tmp", std::process::id(), hex::encode(unique)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    Ok(temporary)
}
