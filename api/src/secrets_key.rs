//! The master key of secrets, and sealing a set of secrets with an environment's data key.
//!
//! Every environment has its own random data key; the log keeps it wrapped (XChaCha20-Poly1305)
//! by the master key, which lives in a file beside the other keys (`DATA_DIR/secrets-key`, 0600,
//! shared by every node like the signing keys). A version's whole set is sealed with the data
//! key (XChaCha20-Poly1305, a random 192-bit nonce, the environment's stream name as associated
//! data, so a sealed set cannot be replayed into another environment). Names carry a keyed
//! digest of their value (HMAC-SHA-256 under a key derived from the data key), so history can
//! tell that a value changed without revealing it.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use credledger_domain::secrets::SecretName;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::problem::Problem;

/// Bytes of a nonce (XChaCha20).
const NONCE: usize = 24;

/// Why the master key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsKeyError {
    #[error("secrets key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("secrets key file {path}: not 32 bytes of base64")]
    Damaged { path: String },
}

/// The master key. Its `Debug` shows nothing of it.
pub struct SecretsKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// Loads the master key from `path`, creating it (0600) on first start; a key another node
    /// wrote meanwhile is never replaced.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsKeyError> {
        let shown = path.display().to_string();
        let io = |source| SecretsKeyError::Io { path: shown.clone(), source };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Zeroizing::new(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                getrandom::fill(key.as_mut()).map_err(|error| io(std::io::Error::other(error)))?;
                let encoded = Zeroizing::new(format!("{}\n", STANDARD.encode(key.as_ref())));
                let temporary = crate::signing::write_private_sibling(path, encoded.as_bytes()).map_err(io)?;
                let linked = std::fs::hard_link(&temporary, path);
                let _ = std::fs::remove_file(&temporary);
                match linked {
                    Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(error)),
                    _ => {}
                }
                Zeroizing::new(std::fs::read_to_string(path).map_err(io)?)
            }
            Err(error) => return Err(io(error)),
        };
        let bytes =
            Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| SecretsKeyError::Damaged { path: shown.clone() })?);
        let key: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| SecretsKeyError::Damaged { path: shown.clone() })?;
        Ok(Self { key: Zeroizing::new(key) })
    }

    /// A new data key for the environment whose stream is `stream`, and its wrapped form.
    pub fn new_data_key(&self, stream: &str) -> Result<(DataKey, String), Problem> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut())
            .map_err(|error| Problem::internal("the system's random source failed", &error))?;
        let wrapped = seal(&self.key, key.as_ref(), stream.as_bytes())?;
        Ok((DataKey { key }, wrapped))
    }

    /// The data key of an environment, from its wrapped form.
    pub fn unwrap(&self, wrapped: &str, stream: &str) -> Result<DataKey, Problem> {
        let bytes = Zeroizing::new(open(&self.key, wrapped, stream.as_bytes())?);
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Problem::internal("unwrapping a data key", &"the data key is not 32 bytes"))?;
        Ok(DataKey { key: Zeroizing::new(key) })
    }
}

/// An environment's data key, in memory only while a request uses it.
pub struct DataKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// The set, sealed for the environment whose stream is `stream`.
    pub fn seal(&self, set: &BTreeMap<SecretName, String>, stream: &str) -> Result<String, Problem> {
        let plain = Zeroizing::new(
            serde_json::to_vec(set).map_err(|error| Problem::internal("encoding a set of secrets", &error))?,
        );
        seal(&self.key, &plain, stream.as_bytes())
    }

    /// The set a version sealed.
    pub fn open(&self, sealed: &str, stream: &str) -> Result<BTreeMap<SecretName, String>, Problem> {
        let plain = Zeroizing::new(open(&self.key, sealed, stream.as_bytes())?);
        serde_json::from_slice(&plain).map_err(|error| Problem::internal("decoding a set of secrets", &error))
    }

    /// The keyed digest of a value: equal for equal values of a name in one environment, and
    /// telling nothing of the value without the key.
    pub fn digest(&self, name: &SecretName, value: &str) -> String {
        let digest_key = Zeroizing::new(
            Sha256::new().chain_update(b"credledger secrets digest\0").chain_update(self.key.as_ref()).finalize(),
        );
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(digest_key.as_slice()).expect("HMAC takes a key of any length");
        mac.update(name.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

fn seal(key: &[u8; 32], plain: &[u8], associated: &[u8]) -> Result<String, Problem> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad: associated })
        .map_err(|_| Problem::internal("sealing secrets", &"encryption failed"))?;
    let mut bytes = Vec::with_capacity(NONCE + sealed.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    Ok(STANDARD.encode(bytes))
}

fn open(key: &[u8; 32], sealed: &str, associated: &[u8]) -> Result<Vec<u8>, Problem> {
    let bytes = STANDARD.decode(sealed).map_err(|error| Problem::internal("reading sealed secrets", &error))?;
    if bytes.len() < NONCE {
        return Err(Problem::internal("reading sealed secrets", &"too short"));
    }
    let (nonce, sealed) = bytes.split_at(NONCE);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: associated }).map_err(|_| {
        Problem::internal("opening sealed secrets", &"authentication failed: another master key, or altered bytes")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_set_opens_only_with_its_key_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let master = SecretsKey::load_or_create(&dir.path().join("secrets-key")).unwrap();
        let (key, wrapped) = master.new_data_key("secrets-a-production").unwrap();
        let set = BTreeMap::from([(SecretName::parse("DB_PASSWORD").unwrap(), "hunter2".to_owned())]);
        let sealed = key.seal(&set, "secrets-a-production").unwrap();
        assert!(!sealed.contains("hunter2"));
        let again = master.unwrap(&wrapped, "secrets-a-production").unwrap();
        assert_eq!(again.open(&sealed, "secrets-a-production").unwrap(), set);
        assert!(again.open(&sealed, "secrets-a-staging").is_err(), "bound to its environment");
        assert!(master.unwrap(&wrapped, "secrets-b-production").is_err());
        let reloaded = SecretsKey::load_or_create(&dir.path().join("secrets-key")).unwrap();
        assert!(reloaded.unwrap(&wrapped, "secrets-a-production").is_ok(), "the key file is reused");
        let name = SecretName::parse("DB_PASSWORD").unwrap();
        assert_eq!(key.digest(&name, "hunter2"), again.digest(&name, "hunter2"));
        assert_ne!(key.digest(&name, "hunter2"), key.digest(&name, "hunter3"));
    }
}
