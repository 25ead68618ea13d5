//! The plaintext formats of secret tokens (DESIGN.md §2), their checksum, digest and display
//! prefix.
//!
//! | kind                          | format                                         |
//! |-------------------------------|------------------------------------------------|
//! | machine token                 | `cl_mt_{env}_{64 hex}{8 hex CRC32}`            |
//! | personal access token         | `cl_pat_{64 hex}{8 hex CRC32}`                 |
//! | service-credential secret     | `cl_cs_{64 hex}{8 hex CRC32}`                  |
//! | service-credential client id  | `cl_ci_{24 hex}` (not secret)                  |
//!
//! The CRC32 covers everything before it, so a secret scanner or the server can refuse a
//! mistyped or invented value offline, before any lookup. The ledger keeps only the SHA-256 of
//! the whole plaintext and a short display prefix. The random bytes are the caller's: the domain
//! has no randomness.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::values::EnvHint;

/// Why a presented value is not a token of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No known prefix, wrong length, or characters outside lowercase hex.
    #[error("not a credledger token")]
    Malformed,
    /// The shape is right but the checksum does not match: a typo or a forgery.
    #[error("the token's checksum does not match: it was mistyped or truncated")]
    BadChecksum,
}

impl TokenError {
    pub const fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_token",
            Self::BadChecksum => "bad_checksum",
        }
    }
}

/// The kinds of secret token, told apart by their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    MachineToken,
    PersonalToken,
    ClientSecret,
}

const SECRET_HEX: usize = 64;
const CHECKSUM_HEX: usize = 8;
/// Hex characters of the random part shown in a display prefix: enough to tell tokens apart in
/// a log, far too few to help guess the rest (224 bits stay hidden).
const PREFIX_HEX: usize = 8;

/// SHA-256 of a token's whole plaintext: the only form in which the ledger keeps a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of a plaintext value.
    pub fn of(plaintext: &str) -> Self {
        Self(Sha256::digest(plaintext.as_bytes()).into())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex characters (either case), e.g. a digest an incident responder pasted.
    pub fn from_hex(input: &str) -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(input.trim(), &mut bytes).map_err(|_| TokenError::Malformed)?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares in constant time, for checks outside a hash lookup.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.to_hex())
    }
}

impl TryFrom<String> for TokenDigest {
    type Error = TokenError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_hex(&value)
    }
}

impl From<TokenDigest> for String {
    fn from(value: TokenDigest) -> Self {
        value.to_hex()
    }
}

/// The start of a token, safe to show and log: `cl_mt_prod_a1b2c3d4`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenPrefix(String);

impl TokenPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret token's plaintext. It exists only to be shown once or checked once; `Debug` never
/// prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken {
    plaintext: String,
    kind: TokenKind,
    /// Length of the kind-and-environment prefix (`cl_mt_prod_`).
    head_len: usize,
}

impl SecretToken {
    /// A new machine token for the environment, from 32 random bytes.
    pub fn machine_token(env: &EnvHint, random: [u8; 32]) -> Self {
        Self::generate(TokenKind::MachineToken, format!("cl_mt_{env}_"), random)
    }

    /// A new personal access token, from 32 random bytes.
    pub fn personal_token(random: [u8; 32]) -> Self {
        Self::generate(TokenKind::PersonalToken, "cl_pat_".to_owned(), random)
    }

    /// A new service-credential client secret, from 32 random bytes.
    pub fn client_secret(random: [u8; 32]) -> Self {
        Self::generate(TokenKind::ClientSecret, "cl_cs_".to_owned(), random)
    }

    fn generate(kind: TokenKind, head: String, random: [u8; 32]) -> Self {
        let head_len = head.len();
        let mut plaintext = head;
        plaintext.push_str(&hex::encode(random));
        let checksum = crc32fast::hash(plaintext.as_bytes());
        plaintext.push_str(&hex::encode(checksum.to_be_bytes()));
        Self { plaintext, kind, head_len }
    }

    /// Parses a presented value: the prefix, the shape, then the checksum. Never panics,
    /// whatever the input.
    pub fn parse(input: &str) -> Result<Self, TokenError> {
        let (kind, head_len) = if let Some(rest) = input.strip_prefix("cl_mt_") {
            let env_len = rest.find('_').ok_or(TokenError::Malformed)?;
            EnvHint::parse(&rest[..env_len]).map_err(|_| TokenError::Malformed)?;
            (TokenKind::MachineToken, "cl_mt_".len() + env_len + 1)
        } else if input.starts_with("cl_pat_") {
            (TokenKind::PersonalToken, "cl_pat_".len())
        } else if input.starts_with("cl_cs_") {
            (TokenKind::ClientSecret, "cl_cs_".len())
        } else {
            return Err(TokenError::Malformed);
        };
        // `head_len` ends on an ASCII `_`, so slicing there is on a character boundary.
        let body = &input[head_len..];
        if body.len() != SECRET_HEX + CHECKSUM_HEX || !body.bytes().all(is_lower_hex) {
            return Err(TokenError::Malformed);
        }
        let (signed, checksum) = input.split_at(input.len() - CHECKSUM_HEX);
        let expected = u32::from_str_radix(checksum, 16).map_err(|_| TokenError::Malformed)?;
        if crc32fast::hash(signed.as_bytes()) != expected {
            return Err(TokenError::BadChecksum);
        }
        Ok(Self { plaintext: input.to_owned(), kind, head_len })
    }

    pub const fn kind(&self) -> TokenKind {
        self.kind
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.plaintext)
    }

    pub fn prefix(&self) -> TokenPrefix {
        TokenPrefix(self.plaintext[..self.head_len + PREFIX_HEX].to_owned())
    }

    /// The plaintext, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.plaintext
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretToken({}…)", self.prefix())
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// A service credential's client id, `cl_ci_{24 hex}`: an identifier, not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl ClientId {
    pub fn generate(random: [u8; 12]) -> Self {
        Self(format!("cl_ci_{}", hex::encode(random)))
    }

    pub fn parse(input: &str) -> Result<Self, TokenError> {
        let body = input.strip_prefix("cl_ci_").ok_or(TokenError::Malformed)?;
        if body.len() == 24 && body.bytes().all(is_lower_hex) {
            Ok(Self(input.to_owned()))
        } else {
            Err(TokenError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ClientId {
    type Error = TokenError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ClientId> for String {
    fn from(value: ClientId) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn prod() -> EnvHint {
        EnvHint::parse("prod").unwrap()
    }

    #[test]
    fn a_machine_token_has_the_documented_shape() {
        let token = SecretToken::machine_token(&prod(), [0xab; 32]);
        let text = token.expose();
        assert!(text.starts_with("cl_mt_prod_abababab"));
        assert_eq!(text.len(), "cl_mt_prod_".len() + 64 + 8);
        let checksum = crc32fast::hash(&text.as_bytes()[..text.len() - 8]);
        assert_eq!(&text[text.len() - 8..], format!("{checksum:08x}"));
        assert_eq!(token.prefix().as_str(), "cl_mt_prod_abababab");
        assert_eq!(token.kind(), TokenKind::MachineToken);
    }

    #[test]
    fn every_kind_parses_back_to_itself() {
        let tokens = [
            SecretToken::machine_token(&EnvHint::parse("ci-2").unwrap(), [7; 32]),
            SecretToken::personal_token([8; 32]),
            SecretToken::client_secret([9; 32]),
        ];
        for token in tokens {
            let parsed = SecretToken::parse(token.expose()).unwrap();
            assert_eq!(parsed, token);
            assert_eq!(parsed.digest(), token.digest());
            assert_eq!(parsed.prefix(), token.prefix());
        }
        assert!(SecretToken::personal_token([1; 32]).expose().starts_with("cl_pat_"));
        assert!(SecretToken::client_secret([1; 32]).expose().starts_with("cl_cs_"));
    }

    #[test]
    fn the_digest_is_sha256_of_the_whole_plaintext() {
        let token = SecretToken::personal_token([1; 32]);
        let expected: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        assert_eq!(token.digest().as_bytes(), &expected);
        assert_eq!(TokenDigest::from_hex(&token.digest().to_hex()).unwrap(), token.digest());
        assert_eq!(TokenDigest::from_hex(&token.digest().to_hex().to_uppercase()).unwrap(), token.digest());
        assert!(TokenDigest::from_hex("abc").is_err());
        assert!(token.digest().ct_eq(&token.digest()));
        assert!(!token.digest().ct_eq(&SecretToken::personal_token([2; 32]).digest()));
    }

    #[test]
    fn a_mistyped_token_fails_its_checksum_and_a_foreign_one_is_malformed() {
        let token = SecretToken::machine_token(&prod(), [3; 32]).expose().to_owned();
        let typo = token.replacen("0303", "0304", 1);
        assert_eq!(SecretToken::parse(&typo), Err(TokenError::BadChecksum));
        for bad in [
            "",
            "cl_mt_",
            "cl_mt_prod",
            &token[..token.len() - 1],
            &format!("{token}0"),
            &token.to_uppercase(),
            &token.replace("cl_mt_prod_", "cl_mt_PROD_"),
            &token.replace("cl_mt_prod_", "cl_mt_0123456789abcdefgh_"),
            "ghp_0123456789abcdef",
            "cl_pat_é",
        ] {
            assert_eq!(SecretToken::parse(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let token = SecretToken::client_secret([5; 32]);
        let debug = format!("{token:?}");
        assert!(!debug.contains(token.expose()));
        assert!(debug.contains("cl_cs_05050505"));
    }

    #[test]
    fn client_ids_are_24_hex_characters() {
        let id = ClientId::generate([0xcd; 12]);
        assert_eq!(id.as_str(), "cl_ci_cdcdcdcdcdcdcdcdcdcdcdcd");
        assert_eq!(ClientId::parse(id.as_str()).unwrap(), id);
        for bad in ["cl_ci_", "cl_ci_CDCDCDCDCDCDCDCDCDCDCDCD", "cl_cs_cdcdcdcdcdcdcdcdcdcdcdcd", "cl_ci_cdcd"] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_input_never_panics(input in any::<String>()) {
            let _ = SecretToken::parse(&input);
            let _ = ClientId::parse(&input);
            let _ = TokenDigest::from_hex(&input);
        }

        #[test]
        fn parsing_near_misses_never_panics(prefix in prop::sample::select(vec!["cl_mt_", "cl_pat_", "cl_cs_", "cl_mt_ci_"]), tail in "[a-f0-9_é\\-]{0,80}") {
            let _ = SecretToken::parse(&format!("{prefix}{tail}"));
        }

        #[test]
        fn any_single_character_change_is_refused(random in any::<[u8; 32]>(), index in 0usize..83, replacement in "[a-z0-9_]") {
            let token = SecretToken::machine_token(&EnvHint::parse("prod").unwrap(), random);
            let text = token.expose();
            let index = index % text.len();
            let mut changed = text.to_owned();
            changed.replace_range(index..=index, &replacement);
            prop_assume!(changed != text);
            prop_assert!(SecretToken::parse(&changed).is_err(), "{changed}");
        }

        #[test]
        fn generated_tokens_always_parse(random in any::<[u8; 32]>()) {
            for token in [
                SecretToken::machine_token(&EnvHint::parse("prod").unwrap(), random),
                SecretToken::personal_token(random),
                SecretToken::client_secret(random),
            ] {
                prop_assert_eq!(SecretToken::parse(token.expose()), Ok(token.clone()));
            }
        }
    }
}
