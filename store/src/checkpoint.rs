//! Signed checkpoints: the ledger's commitment to its own history.
//!
//! A checkpoint states the log's origin (the ledger's name), its size and the Merkle root over
//! its first `size` leaf hashes, and when it was signed. It is written in the C2SP
//! `tlog-checkpoint` text format and signed as a C2SP `signed-note` with the ledger's Ed25519
//! key, so any tool that reads transparency-log checkpoints (Go's `sumdb/note`, Sigstore's,
//! the `signed_note` crate) can check it:
//!
//! ```text
//! ledger.example.com/credledger
//! 1234
//! 2aQ6xg3vWVqCQ0mZ0Q5Gm2ZcAn3lXk9gk0dq3bFz0YI=
//! time 2026-11-25T10:00:00Z
//!
//! — ledger.example.com/credledger Az3d9u6...
//! ```
//!
//! The key travels as the note's standard encodings: the private key file holds
//! `PRIVATE+KEY+<origin>+<key id>+<base64>`, the public *verifier key* is
//! `<origin>+<key id>+<base64(0x01 ‖ public key)>`. Everything here is pure apart from drawing a
//! new key's randomness.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SubsecRound, Utc};
use credledger_domain::time_format;
use ed25519_dalek::SigningKey;
use signed_note::{Note, Signer, StandardSigner, StandardVerifier, VerifierList};

/// The signature algorithm byte of an Ed25519 key in the signed-note encodings.
const ALG_ED25519: u8 = 1;

/// What is wrong with a key, a checkpoint or its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The ledger name is empty or holds a space or a `+`, which the note format forbids.
    #[error("`{0}` cannot name a ledger: it must be non-empty without spaces or `+`")]
    InvalidOrigin(String),
    /// The private or verifier key is not in the signed-note encoding.
    #[error("malformed {0} key: expected the signed-note encoding (`<name>+<key id>+<base64>`)")]
    MalformedKey(&'static str),
    /// No randomness for a new key.
    #[error("no randomness for a new ledger key: {0}")]
    Random(String),
    /// The text is not a signed note with a checkpoint body.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The note is not signed by the given key, or the signature does not verify: the
    /// checkpoint must not be trusted.
    #[error("the checkpoint's signature does not verify with key {0}")]
    BadSignature(String),
    /// The checkpoint is signed by the right key but names another ledger.
    #[error("the checkpoint names ledger `{found}`, the key belongs to `{expected}`")]
    WrongOrigin { expected: String, found: String },
}

/// The ledger's state at one moment: what a signature commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The ledger's name; also the signing key's name.
    pub origin: String,
    /// How many events the tree covers: positions `1..=tree_size`.
    pub tree_size: u64,
    /// The Merkle root over the first `tree_size` leaf hashes.
    pub root_hash: [u8; 32],
    /// When the checkpoint was signed, to the second.
    pub signed_at: DateTime<Utc>,
}

impl Checkpoint {
    /// The note text that is signed: origin, size, base64 root, and a `time` extension line.
    pub fn body(&self) -> String {
        // `parse_body` admits only times RFC 3339 can write in UTC; a checkpoint built otherwise
        // has an empty `time` line rather than one no reader takes.
        let time = time_format::format(&self.signed_at.trunc_subsecs(0)).unwrap_or_default();
        format!("{}\n{}\n{}\ntime {time}\n", self.origin, self.tree_size, STANDARD.encode(self.root_hash))
    }

    /// Reads a checkpoint body (the signed text of the note, without signatures).
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let malformed = |what: &str| CheckpointError::Malformed(what.to_owned());
        let mut lines =
            text.strip_suffix('\n').ok_or_else(|| malformed("the text must end with a newline"))?.split('\n');
        let origin = lines.next().filter(|origin| !origin.is_empty()).ok_or_else(|| malformed("no origin line"))?;
        let tree_size = lines
            .next()
            .filter(|size| {
                !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size == &"0" || !size.starts_with('0'))
            })
            .and_then(|size| size.parse::<u64>().ok())
            .ok_or_else(|| malformed("the second line must be the tree size in decimal"))?;
        let root_hash = lines
            .next()
            .and_then(|root| STANDARD.decode(root).ok())
            .and_then(|root| <[u8; 32]>::try_from(root).ok())
            .ok_or_else(|| malformed("the third line must be the base64 root hash of 32 bytes"))?;
        let signed_at = lines
            .find_map(|line| line.strip_prefix("time "))
            .and_then(|time| time_format::parse(time).ok())
            // The body is written in UTC: a time whose UTC year falls outside 0–9999 has no
            // RFC 3339 spelling there.
            .filter(|time| time_format::format(time).is_some())
            .ok_or_else(|| malformed("no `time` line with an RFC 3339 time"))?;
        Ok(Self { origin: origin.to_owned(), tree_size, root_hash, signed_at })
    }
}

/// The ledger's Ed25519 signing key. `Debug` never prints the private half.
#[derive(Clone)]
pub struct LedgerKey {
    origin: String,
    signer: StandardSigner,
    secret: String,
    verifier_key: String,
    public_key: [u8; 32],
}

impl fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerKey").field("verifier_key", &self.verifier_key).finish_non_exhaustive()
    }
}

impl LedgerKey {
    /// A new key for the ledger named `origin`.
    pub fn generate(origin: &str) -> Result<Self, CheckpointError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| CheckpointError::Random(error.to_string()))?;
        Self::from_seed(origin, &seed)
    }

    /// The key with this 32-byte Ed25519 seed.
    pub fn from_seed(origin: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(CheckpointError::InvalidOrigin(origin.to_owned()));
        }
        let public = SigningKey::from_bytes(seed).verifying_key().to_bytes();
        let id = key_id(origin, &public);
        let mut private = vec![ALG_ED25519];
        private.extend_from_slice(seed);
        Self::from_secret(&format!("PRIVATE+KEY+{origin}+{id:08x}+{}", STANDARD.encode(private)))
    }

    /// Reads the private key encoding `PRIVATE+KEY+<origin>+<key id>+<base64>`.
    pub fn from_secret(secret: &str) -> Result<Self, CheckpointError> {
        let secret = secret.trim();
        let signer = StandardSigner::new(secret).map_err(|_| CheckpointError::MalformedKey("private"))?;
        // The base64 key may itself hold `+`: it is everything after the fourth separator.
        let seed: [u8; 32] = secret
            .splitn(5, '+')
            .nth(4)
            .and_then(|key| STANDARD.decode(key).ok())
            .and_then(|key| key.get(1..).and_then(|seed| seed.try_into().ok()))
            .ok_or(CheckpointError::MalformedKey("private"))?;
        let public_key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let origin = signer.name().to_owned();
        let verifier_key = verifier_key(&origin, &public_key);
        Ok(Self { origin, signer, secret: secret.to_owned(), verifier_key, public_key })
    }

    /// The private key encoding, for the key file; never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The ledger's name, which every checkpoint it signs carries.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public verifier key, `<origin>+<key id>+<base64>`: what auditors pin.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The 4-byte key id that every signature line names.
    pub fn key_id(&self) -> u32 {
        self.signer.key_id()
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Signs the checkpoint of the first `tree_size` events (their Merkle root `root_hash`) and
    /// returns the `CheckpointSigned` event that records it in the `ledger` stream. Its id is
    /// derived from the ledger and the tree size, so every signer of the same tree size writes the
    /// same event and a second append of it is a retry, not a second checkpoint.
    pub fn checkpoint_event(
        &self,
        tree_size: u64,
        root_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<crate::NewEvent, CheckpointError> {
        use credledger_domain::ledger::{CHECKPOINT_SIGNED, CheckpointSigned};
        use sha2::Digest as _;
        let payload = CheckpointSigned {
            origin: self.origin.clone(),
            tree_size,
            root_hash: hex::encode(root_hash),
            signed_at: at.trunc_subsecs(0),
            note: self.sign(tree_size, root_hash, at)?,
        };
        let digest = sha2::Sha256::digest(format!("{CHECKPOINT_SIGNED}\u{0}{}\u{0}{tree_size}", self.origin));
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Ok(crate::NewEvent {
            event_id: credledger_domain::EventId::from_uuid(uuid::Builder::from_custom_bytes(id).into_uuid()),
            event_type: CHECKPOINT_SIGNED.to_owned(),
            schema_version: credledger_domain::SCHEMA_VERSION,
            org_id: None,
            occurred_at: at,
            actor: credledger_domain::Actor::system("ledger"),
            request: None,
            payload: serde_json::to_value(&payload).map_err(|error| CheckpointError::Malformed(error.to_string()))?,
        })
    }

    /// The signed note of a checkpoint of this ledger.
    pub fn sign(&self, tree_size: u64, root_hash: [u8; 32], at: DateTime<Utc>) -> Result<String, CheckpointError> {
        let checkpoint = Checkpoint { origin: self.origin.clone(), tree_size, root_hash, signed_at: at };
        let mut note = Note::new(checkpoint.body().as_bytes(), &[])
            .map_err(|error| CheckpointError::Malformed(error.to_string()))?;
        note.add_sigs(&[&self.signer]).map_err(|error| CheckpointError::Malformed(error.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|error| CheckpointError::Malformed(error.to_string()))
    }
}

/// Checks checkpoints against a pinned verifier key.
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    verifier_key: String,
    origin: String,
}

impl CheckpointVerifier {
    /// A verifier for the key `<origin>+<key id>+<base64(0x01 ‖ public key)>`.
    pub fn new(verifier_key: &str) -> Result<Self, CheckpointError> {
        let verifier_key = verifier_key.trim();
        let verifier = StandardVerifier::new(verifier_key).map_err(|_| CheckpointError::MalformedKey("verifier"))?;
        let origin = signed_note::Verifier::name(&verifier).to_owned();
        Ok(Self { verifier_key: verifier_key.to_owned(), origin })
    }

    /// The ledger the key belongs to.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The key as given.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The checkpoint a signed note states, if and only if this key signed it.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let parsed =
            Note::from_bytes(note.as_bytes()).map_err(|error| CheckpointError::Malformed(error.to_string()))?;
        let verifier =
            StandardVerifier::new(&self.verifier_key).map_err(|_| CheckpointError::MalformedKey("verifier"))?;
        parsed
            .verify(&VerifierList::new(vec![Box::new(verifier)]))
            .map_err(|_| CheckpointError::BadSignature(self.verifier_key.clone()))?;
        let text = std::str::from_utf8(parsed.text()).map_err(|error| CheckpointError::Malformed(error.to_string()))?;
        let checkpoint = Checkpoint::parse_body(text)?;
        if checkpoint.origin != self.origin {
            return Err(CheckpointError::WrongOrigin { expected: self.origin.clone(), found: checkpoint.origin });
        }
        Ok(checkpoint)
    }
}

/// SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4], the key id the note format recommends.
fn key_id(origin: &str, public_key: &[u8; 32]) -> u32 {
    let mut encoded = vec![ALG_ED25519];
    encoded.extend_from_slice(public_key);
    signed_note::key_id(origin, &encoded)
}

fn verifier_key(origin: &str, public_key: &[u8; 32]) -> String {
    let mut encoded = vec![ALG_ED25519];
    encoded.extend_from_slice(public_key);
    format!("{origin}+{:08x}+{}", key_id(origin, public_key), STANDARD.encode(encoded))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};

    use super::*;

    fn key() -> LedgerKey {
        LedgerKey::from_seed("ledger.example/credledger", &[7; 32]).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_reads_back() {
        let key = key();
        let note = key
            .sign(
                42,
                [9; 32],
                Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap().with_nanosecond(500_000_000).unwrap(),
            )
            .unwrap();
        assert!(note.starts_with("ledger.example/credledger\n42\n"), "{note}");
        assert!(note.contains("\ntime 2026-11-25T10:00:00Z\n\n\u{2014} ledger.example/credledger "), "{note}");
        let checkpoint = CheckpointVerifier::new(key.verifier_key()).unwrap().verify(&note).unwrap();
        assert_eq!(checkpoint.tree_size, 42);
        assert_eq!(checkpoint.root_hash, [9; 32]);
        assert_eq!(checkpoint.signed_at, Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap());
        assert_eq!(checkpoint.origin, "ledger.example/credledger");
    }

    #[test]
    fn the_secret_round_trips_and_debug_hides_it() {
        let key = key();
        let again = LedgerKey::from_secret(key.secret()).unwrap();
        assert_eq!(again.verifier_key(), key.verifier_key());
        assert_eq!(again.public_key(), key.public_key());
        assert!(!format!("{key:?}").contains(key.secret()));
        assert!(LedgerKey::from_secret("PRIVATE+KEY+x+00000000+AA==").is_err());
        assert!(LedgerKey::from_seed("two words", &[1; 32]).is_err());
    }

    #[test]
    fn a_key_whose_base64_holds_a_plus_reads_back() {
        let mut pluses = 0;
        for byte in 0..=u8::MAX {
            let key = LedgerKey::from_seed("ledger.example/credledger", &[byte; 32]).unwrap();
            pluses += usize::from(key.secret().matches('+').count() > 4);
            let again = LedgerKey::from_secret(key.secret()).unwrap();
            assert_eq!(again.public_key(), key.public_key(), "seed {byte}");
        }
        assert!(pluses > 0, "some seeds encode with a `+`");
    }

    #[test]
    fn an_altered_note_or_another_key_is_refused() {
        let key = key();
        let verifier = CheckpointVerifier::new(key.verifier_key()).unwrap();
        let note = key.sign(42, [9; 32], Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()).unwrap();
        for altered in [note.replacen("\n42\n", "\n43\n", 1), note.replacen("time 2026", "time 2027", 1)] {
            assert!(matches!(verifier.verify(&altered), Err(CheckpointError::BadSignature(_))), "{altered}");
        }
        let other = LedgerKey::from_seed("ledger.example/credledger", &[8; 32]).unwrap();
        let forged = other.sign(42, [9; 32], Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()).unwrap();
        assert!(verifier.verify(&forged).is_err());
        let renamed = LedgerKey::from_seed("elsewhere.example/credledger", &[7; 32]).unwrap();
        assert!(
            verifier
                .verify(&renamed.sign(42, [9; 32], Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()).unwrap())
                .is_err()
        );
        assert!(verifier.verify("not a note").is_err());
        assert!(CheckpointVerifier::new("nonsense").is_err());
    }

    #[test]
    fn bodies_with_bad_lines_are_refused() {
        for body in [
            "o\n01\nAAAA\ntime 2026-11-25T10:00:00Z\n",
            "o\n1\nAAAA\ntime 2026-11-25T10:00:00Z\n",
            "o\n1\n",
            "o\n-1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\ntime 2026-11-25T10:00:00Z\n",
            "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            // Times the UTC body cannot spell: past 9999 or before year 0 once in UTC.
            "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\ntime 9999-12-31T23:59:59-23:59\n",
            "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\ntime 0000-01-01T00:00:00+23:59\n",
        ] {
            assert!(Checkpoint::parse_body(body).is_err(), "{body}");
        }
        let body = "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\ntime 2026-11-25T10:00:00Z\n";
        assert_eq!(Checkpoint::parse_body(body).unwrap().root_hash, [9; 32]);
    }
}
