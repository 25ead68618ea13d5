//! The machine key string a CI system holds for a machine identity:
//! `credledger-machine-v1:{base64url(version ‖ org id ‖ machine id ‖ seed ‖ crc32)}`.
//!
//! It carries the organization and machine ids (so a client needs nothing else) and the 32-byte
//! Ed25519 private seed, which never reaches the server: the server knows only the public key. A
//! version byte lets the format change, and a CRC32 over everything before it turns a truncated or
//! mistyped key into a clear error instead of a confusing signature failure.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{CredentialId, OrgId};

const PREFIX: &str = "credledger-machine-v1:";
const VERSION: u8 = 1;
/// version (1) + org id (16) + machine id (16) + seed (32) + crc32 (4).
const LENGTH: usize = 1 + 16 + 16 + 32 + 4;

/// Why a string is not a machine key; each says what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MachineKeyError {
    #[error("a machine key starts with `credledger-machine-v1:`")]
    Prefix,
    #[error("the machine key is not base64url: it was mistyped or mangled")]
    Encoding,
    #[error("the machine key has {found} bytes instead of {LENGTH}: it was truncated or extended")]
    Length { found: usize },
    #[error("machine key version {0} is not known to this release")]
    Version(u8),
    #[error("the machine key's checksum does not match: it was mistyped or altered")]
    Checksum,
}

/// A machine's private key and where it belongs. `Debug` never shows the seed.
#[derive(Clone, PartialEq, Eq)]
pub struct MachineKey {
    pub org_id: OrgId,
    pub machine_id: CredentialId,
    seed: [u8; 32],
}

impl MachineKey {
    pub fn new(org_id: OrgId, machine_id: CredentialId, seed: [u8; 32]) -> Self {
        Self { org_id, machine_id, seed }
    }

    /// The Ed25519 private seed, for signing assertions.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The string to store in a CI secret.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(LENGTH);
        bytes.push(VERSION);
        bytes.extend_from_slice(self.org_id.as_uuid().as_bytes());
        bytes.extend_from_slice(self.machine_id.as_uuid().as_bytes());
        bytes.extend_from_slice(&self.seed);
        let checksum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&checksum.to_be_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses a key string; never panics, whatever the input.
    pub fn parse(input: &str) -> Result<Self, MachineKeyError> {
        let encoded = input.trim().strip_prefix(PREFIX).ok_or(MachineKeyError::Prefix)?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| MachineKeyError::Encoding)?;
        if bytes.len() != LENGTH {
            return Err(MachineKeyError::Length { found: bytes.len() });
        }
        let (body, checksum) = bytes.split_at(LENGTH - 4);
        let expected = u32::from_be_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
        if crc32fast::hash(body) != expected {
            return Err(MachineKeyError::Checksum);
        }
        if body[0] != VERSION {
            return Err(MachineKeyError::Version(body[0]));
        }
        let uuid = |range: std::ops::Range<usize>| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&body[range]);
            uuid::Uuid::from_bytes(id)
        };
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&body[33..65]);
        Ok(Self { org_id: OrgId::from_uuid(uuid(1..17)), machine_id: CredentialId::from_uuid(uuid(17..33)), seed })
    }
}

impl fmt::Debug for MachineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineKey")
            .field("org_id", &self.org_id)
            .field("machine_id", &self.machine_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> MachineKey {
        MachineKey::new(
            OrgId::from_uuid(uuid::Uuid::from_u128(7)),
            CredentialId::from_uuid(uuid::Uuid::from_u128(9)),
            [seed; 32],
        )
    }

    #[test]
    fn a_key_round_trips_and_hides_its_seed_in_debug() {
        let original = key(42);
        let text = original.encode();
        assert!(text.starts_with("credledger-machine-v1:"));
        assert_eq!(MachineKey::parse(&text), Ok(original.clone()));
        assert_eq!(MachineKey::parse(&format!("  {text}\n")), Ok(original.clone()), "surrounding space is ignored");
        let debug = format!("{original:?}");
        assert!(!debug.contains("42") && !debug.contains(&hex::encode([42u8; 32])), "{debug}");
    }

    #[test]
    fn every_truncation_is_refused_with_a_clear_error() {
        let text = key(1).encode();
        for end in 0..text.len() {
            let error = MachineKey::parse(&text[..end]).expect_err("a truncated key");
            assert!(
                matches!(error, MachineKeyError::Prefix | MachineKeyError::Length { .. } | MachineKeyError::Encoding),
                "cut at {end}: {error:?}"
            );
        }
    }

    #[test]
    fn every_single_byte_change_is_refused() {
        let text = key(3).encode();
        let body_start = PREFIX.len();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for index in 0..text.len() {
            for replacement in [alphabet.chars().next(), alphabet.chars().nth(37), Some('!')].into_iter().flatten() {
                let mut changed = text.clone();
                changed.replace_range(index..=index, &replacement.to_string());
                if changed == text {
                    continue;
                }
                let refused = MachineKey::parse(&changed);
                assert!(
                    refused.is_err(),
                    "change at {index} ({}): accepted",
                    if index < body_start { "prefix" } else { "body" }
                );
            }
        }
    }

    #[test]
    fn another_version_is_named() {
        let mut bytes = URL_SAFE_NO_PAD.decode(key(5).encode().strip_prefix(PREFIX).unwrap()).unwrap();
        bytes[0] = 2;
        let body_len = bytes.len() - 4;
        let checksum = crc32fast::hash(&bytes[..body_len]).to_be_bytes();
        bytes[body_len..].copy_from_slice(&checksum);
        let text = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(MachineKey::parse(&text), Err(MachineKeyError::Version(2)));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_input_never_panics(input in any::<String>()) {
            let _ = MachineKey::parse(&input);
            let _ = MachineKey::parse(&format!("{PREFIX}{input}"));
        }

        #[test]
        fn any_key_round_trips(org in any::<u128>(), machine in any::<u128>(), seed in any::<[u8; 32]>()) {
            let key = MachineKey::new(
                OrgId::from_uuid(uuid::Uuid::from_u128(org)),
                CredentialId::from_uuid(uuid::Uuid::from_u128(machine)),
                seed,
            );
            prop_assert_eq!(MachineKey::parse(&key.encode()), Ok(key));
        }
    }
}
