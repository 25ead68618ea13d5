//! Entry points for the fuzz targets (`fuzz/`): every parser of outside input, called exactly as
//! the server and the command line call it, with the laws that must hold when it accepts. A
//! panic here is a bug. The same functions replay `fuzz/regressions/` in an ordinary `cargo test`
//! (`api/tests/fuzz_regressions.rs`), so a crash once found stays fixed without a nightly
//! compiler.

use axum::http::{HeaderMap, HeaderValue, header};
use credledger_domain::machine_key::MachineKey;
use credledger_domain::token::{ClientId, SecretToken, TokenDigest};
use credledger_store::checkpoint::{Checkpoint, CheckpointVerifier, LedgerKey};

use crate::extract::parse_json;
use crate::input::ConditionsInput;
use crate::routes::machine_tokens::CreateMachineTokenRequest;
use crate::routes::oauth;

/// A fuzz target: arbitrary bytes in, a panic for a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: the directory names under `fuzz/seeds/` and `fuzz/regressions/`.
pub const TARGETS: [(&str, Target); 6] = [
    ("token_strings", token_strings),
    ("machine_key", machine_key),
    ("checkpoint_note", checkpoint_note),
    ("export_lines", export_lines),
    ("json_body", json_body),
    ("form_body", form_body),
];

/// Bearer values, client ids, client secrets and digests (the authentication hot path and the
/// incident trace). An accepted token is canonical: parsing what it exposes gives it back.
pub fn token_strings(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else { return };
    if let Ok(token) = SecretToken::parse(input) {
        let again = SecretToken::parse(token.expose()).expect("an accepted token parses again");
        assert_eq!(again.digest(), token.digest());
        assert_eq!(again.kind(), token.kind());
        assert!(token.expose().starts_with(token.prefix().as_str()), "the prefix is a prefix of the token");
    }
    if let Ok(id) = ClientId::parse(input) {
        assert_eq!(ClientId::parse(id.as_str()).expect("an accepted client id parses again").as_str(), id.as_str());
    }
    if let Ok(digest) = TokenDigest::from_hex(input) {
        assert_eq!(TokenDigest::from_hex(&digest.to_hex()).expect("hex of a digest parses").to_hex(), digest.to_hex());
    }
}

/// `credledger-machine-v1:…` strings a CI job hands the command line. An accepted key is
/// canonical: it encodes back to the text it was read from.
pub fn machine_key(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else { return };
    if let Ok(key) = MachineKey::parse(input) {
        assert_eq!(key.encode(), input.trim(), "a machine key has one spelling");
    }
}

/// The key every checkpoint target verifies against: fixed, so that a crash replays and the seeds
/// (signed with it) reach past the signature check.
fn ledger_key() -> LedgerKey {
    LedgerKey::from_seed("credledger.test/fuzz", &[7; 32]).expect("a fixed ledger key")
}

/// The verifier of [`ledger_key`].
pub fn ledger_verifier() -> CheckpointVerifier {
    CheckpointVerifier::new(ledger_key().verifier_key()).expect("the fixed key's verifier")
}

/// Signed notes a verifier is handed (`audit verify --checkpoint`, the API's checkpoints) and
/// their bodies. A body that parses is read back unchanged from the text it prints.
pub fn checkpoint_note(data: &[u8]) {
    let Ok(note) = std::str::from_utf8(data) else { return };
    let _ = ledger_verifier().verify(note);
    if let Ok(checkpoint) = Checkpoint::parse_body(note) {
        let again = Checkpoint::parse_body(&checkpoint.body()).expect("a printed checkpoint parses");
        assert_eq!(
            (&again.origin, again.tree_size, again.root_hash),
            (&checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash)
        );
        assert_eq!(again.signed_at.timestamp(), checkpoint.signed_at.timestamp());
    }
}

/// Export files `credledger audit verify` reads, line by line.
pub fn export_lines(data: &[u8]) {
    let _ = credledger_store::verify::verify_export(data, &ledger_verifier(), None, |_| {});
}

/// JSON request bodies: the strict parser with the offending field's path, then the values a
/// machine-token body carries. A refusal is always a client error.
pub fn json_body(data: &[u8]) {
    let problems = [
        parse_json::<serde_json::Value>(data).err(),
        parse_json::<CreateMachineTokenRequest>(data).err(),
        parse_json::<ConditionsInput>(data).and_then(|conditions| conditions.parse().map(|_| ())).err(),
    ];
    for problem in problems.into_iter().flatten() {
        assert!(problem.status.is_client_error(), "{problem:?}");
    }
}

/// OAuth2 form bodies and HTTP Basic client credentials (token and introspection endpoints). The
/// first byte chooses the content type, the rest is the body; the body is also read as the value
/// of an `Authorization: Basic` header.
pub fn form_body(data: &[u8]) {
    let Some((choice, body)) = data.split_first() else { return };
    let content_type = match choice % 3 {
        0 => "application/x-www-form-urlencoded",
        1 => "application/x-www-form-urlencoded; charset=UTF-8",
        _ => "text/plain",
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(parameters) = oauth::form(&headers, body) {
        assert!(parameters.values().all(|value| !value.is_empty()), "an empty parameter is an omitted one");
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = oauth::decode_basic(text);
    }
}
