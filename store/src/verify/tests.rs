//! Exports built from a real log (events appended to a SQLite store, with `CheckpointSigned`
//! events signed along the way as the server does), then tampered with line by line.

use std::io::Cursor;
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use credledger_domain::{Actor, EventId, OrgId};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::checkpoint::LedgerKey;
use crate::merkle::{self, ProofError};
use crate::{ExpectedVersion, NewEvent, leaf_hash};

const ORIGIN: &str = "ledger.test/credledger";
const SIGNED_AT: DateTime<Utc> =
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(10, 0, 0).unwrap().and_utc();

fn key() -> LedgerKey {
    LedgerKey::from_seed(ORIGIN, &[7; 32]).unwrap()
}

fn other_key() -> LedgerKey {
    LedgerKey::from_seed(ORIGIN, &[8; 32]).unwrap()
}

fn verifier() -> CheckpointVerifier {
    CheckpointVerifier::new(key().verifier_key()).unwrap()
}

fn org(n: u128) -> OrgId {
    OrgId::from_uuid(Uuid::from_u128(0x0A_0000 + n))
}

/// A log as the store holds it: each event's envelope bytes and leaf hash, position `i + 1`.
struct Log {
    envelopes: Vec<Vec<u8>>,
    leaves: Vec<[u8; 32]>,
    /// The organization of each event.
    orgs: Vec<Option<OrgId>>,
    /// Positions of the `CheckpointSigned` events, with the tree size each signs.
    checkpoints: Vec<(u64, u64)>,
}

impl Log {
    fn len(&self) -> u64 {
        self.envelopes.len() as u64
    }

    fn org_of(&self, position: u64) -> Option<OrgId> {
        self.orgs[position as usize - 1]
    }
}

fn event(org_id: Option<OrgId>, n: u64, event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: event_type.to_owned(),
        schema_version: 1,
        org_id,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap() + chrono::TimeDelta::seconds(n as i64),
        actor: Actor::system("verify-test"),
        request: None,
        payload,
    }
}

/// Appends `events` events to a fresh SQLite store: three organizations' streams and a
/// server-wide one, and every 23 events a checkpoint signed by `signer` over the head, recorded
/// two events later (the lag of a real signer racing appends).
async fn build(events: u64, signer: &LedgerKey) -> Log {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::open(&format!("sqlite://{}", dir.path().join("events.db").display())).await.unwrap();
    let orgs = [Some(org(1)), Some(org(2)), Some(org(3)), None];
    let mut checkpoints = Vec::new();
    let mut pending: Option<(u64, String)> = None;
    for n in 0..events {
        let org_index = (n * 7 % 4) as usize;
        let stream = format!("mt-{org_index}-{}", n % 5);
        let payload = json!({"n": n, "secretHash": format!("{n:064x}"), "note\u{e9}": "caf\u{e9} \"quoted\""});
        store
            .append(&stream, ExpectedVersion::Any, vec![event(orgs[org_index], n, "TestEvent", payload)])
            .await
            .unwrap();
        let head = store.head().await.unwrap();
        if let Some((size, note)) = pending.take_if(|(size, _)| head >= *size + 2) {
            let root = merkle::root(&store.read_leaf_hashes(1, size as usize).await.unwrap());
            let payload = json!({"origin": ORIGIN, "treeSize": size, "rootHash": hex::encode(root),
                "signedAt": credledger_domain::time_format::format(&SIGNED_AT).unwrap(), "note": note});
            let at = store
                .append("ledger", ExpectedVersion::Any, vec![event(None, n, "CheckpointSigned", payload)])
                .await
                .unwrap();
            checkpoints.push((at.first_position, size));
        }
        if pending.is_none() && n % 23 == 22 {
            let root = merkle::root(&store.read_leaf_hashes(1, head as usize).await.unwrap());
            pending = Some((head, signer.sign(head, root, SIGNED_AT).unwrap()));
        }
    }
    let rows = store.read_raw(1, usize::MAX >> 1).await.unwrap();
    store.close().await;
    assert!(rows.iter().enumerate().all(|(i, row)| row.position == i as u64 + 1));
    Log {
        orgs: rows.iter().map(|row| row.org_id.as_deref().map(|id| OrgId::parse(id).unwrap())).collect(),
        leaves: rows.iter().map(|row| <[u8; 32]>::try_from(row.leaf_hash.as_slice()).unwrap()).collect(),
        envelopes: rows.into_iter().map(|row| row.envelope.to_vec()).collect(),
        checkpoints,
    }
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// One log of a few hundred events, shared by the tests that only read it.
fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| block_on(build(300, &key())))
}

fn note(log: &Log, tree_size: u64) -> String {
    key().sign(tree_size, merkle::root(&log.leaves[..tree_size as usize]), SIGNED_AT).unwrap()
}

fn header(scope: &str, org_id: Option<OrgId>, tree_size: u64, root: [u8; 32], note: &str) -> Vec<u8> {
    let mut header = json!({"format": "credledger-export", "version": 1, "scope": scope, "treeSize": tree_size,
        "rootHash": hex::encode(root), "checkpoint": note});
    if let Some(org_id) = org_id {
        header["orgId"] = json!(org_id);
    }
    serde_json::to_vec(&header).unwrap()
}

fn event_line(position: u64, leaf: &[u8; 32], proof: Option<&[[u8; 32]]>, envelope: &[u8]) -> Vec<u8> {
    let mut line = format!("{{\"position\":{position},\"leafHash\":\"{}\"", hex::encode(leaf));
    if let Some(proof) = proof {
        let hashes: Vec<String> = proof.iter().map(hex::encode).collect();
        line.push_str(",\"inclusionProof\":");
        line.push_str(&serde_json::to_string(&hashes).unwrap());
    }
    line.push_str(",\"envelope\":");
    [line.into_bytes(), envelope.to_vec(), b"}".to_vec()].concat()
}

/// The full export of the first `tree_size` events, made under a checkpoint of that size.
fn ledger_export(log: &Log, tree_size: u64) -> Vec<Vec<u8>> {
    let root = merkle::root(&log.leaves[..tree_size as usize]);
    let mut lines = vec![header("ledger", None, tree_size, root, &note(log, tree_size))];
    for position in 1..=tree_size {
        let i = position as usize - 1;
        lines.push(event_line(position, &log.leaves[i], None, &log.envelopes[i]));
    }
    lines
}

/// `org_id`'s export of the first `tree_size` events, with inclusion proofs.
fn org_export(log: &Log, org_id: OrgId, tree_size: u64) -> Vec<Vec<u8>> {
    let root = merkle::root(&log.leaves[..tree_size as usize]);
    let mut lines = vec![header("organization", Some(org_id), tree_size, root, &note(log, tree_size))];
    for position in (1..=tree_size).filter(|&position| log.org_of(position) == Some(org_id)) {
        let i = position as usize - 1;
        let proof = merkle::inclusion_proof(&log.leaves, position - 1, tree_size).unwrap();
        lines.push(event_line(position, &log.leaves[i], Some(&proof), &log.envelopes[i]));
    }
    lines
}

fn verify(lines: &[Vec<u8>], trusted: Option<&str>) -> Result<Verified, VerifyError> {
    verify_export(Cursor::new(lines.join(&b'\n')), &verifier(), trusted, |_| {})
}

/// Rewrites the envelope of line `at` (1 = the first event) with `edit`, and its leaf hash too
/// when `rehash` (a forger who also recomputes the stored hash).
fn alter(lines: &mut [Vec<u8>], at: usize, rehash: bool, edit: impl FnOnce(&mut Vec<u8>)) {
    let text = &lines[at];
    let split = text.windows(12).position(|w| w == b",\"envelope\":").unwrap();
    let head: serde_json::Value = serde_json::from_slice(&[&text[..split], b"}"].concat()).unwrap();
    let mut envelope = text[split + 12..text.len() - 1].to_vec();
    edit(&mut envelope);
    let leaf =
        if rehash { leaf_hash(&envelope) } else { super::line::hash(head["leafHash"].as_str().unwrap()).unwrap() };
    let proof: Option<Vec<[u8; 32]>> = head["inclusionProof"]
        .as_array()
        .map(|hashes| hashes.iter().map(|h| super::line::hash(h.as_str().unwrap()).unwrap()).collect());
    lines[at] = event_line(head["position"].as_u64().unwrap(), &leaf, proof.as_deref(), &envelope);
}

/// Flips one bit of the payload of an envelope (well inside it, so the JSON stays JSON).
fn flip_payload_byte(envelope: &mut [u8]) {
    let at = envelope.windows(10).position(|w| w == b"secretHash").unwrap() + 20;
    envelope[at] ^= 0x01;
}

#[test]
fn an_honest_ledger_export_verifies_with_its_counts() {
    let log = log();
    let mut calls = Vec::new();
    let lines = ledger_export(log, log.len());
    let verified =
        verify_export(Cursor::new(lines.join(&b'\n')), &verifier(), None, |progress| calls.push(progress)).unwrap();
    assert_eq!(verified.scope, Scope::Ledger);
    assert_eq!(verified.events, log.len());
    assert_eq!(verified.tree_size, log.len());
    assert_eq!(verified.root_hash, merkle::root(&log.leaves));
    assert_eq!(verified.organizations, 3);
    assert_eq!(verified.streams, 21, "5 streams for each of 3 organizations and the server, and `ledger`");
    assert_eq!(verified.checkpoints_checked, log.checkpoints.len() as u64);
    assert!(verified.checkpoints_checked >= 10, "{:?}", log.checkpoints);
    assert_eq!(verified.checkpoints_unchecked, 0);
    assert_eq!(verified.made_under.tree_size, log.len());
    assert_eq!(verified.trusted, None);
    assert_eq!(calls.last(), Some(&Progress { events: log.len(), position: log.len(), tree_size: log.len() }));
    // A trailing newline is no extra line.
    let mut with_newline = lines.join(&b'\n');
    with_newline.push(b'\n');
    assert!(verify_export(Cursor::new(with_newline), &verifier(), None, |_| {}).is_ok());
}

#[test]
fn honest_exports_of_every_size_verify() {
    let log = log();
    for size in 1..=log.len() {
        let verified = verify(&ledger_export(log, size), None).unwrap_or_else(|error| panic!("{size}: {error}"));
        assert_eq!(verified.root_hash, merkle::root(&log.leaves[..size as usize]));
        let checkpoints = log.checkpoints.iter().filter(|(position, _)| *position <= size).count();
        assert_eq!(verified.checkpoints_checked, checkpoints as u64, "{size}");
    }
    for size in [1, 2, 3, 50, 128, 129, log.len()] {
        for org_id in [org(1), org(2), org(3)] {
            let verified =
                verify(&org_export(log, org_id, size), None).unwrap_or_else(|error| panic!("{size}: {error}"));
            assert_eq!(verified.scope, Scope::Organization(org_id));
            let count = (1..=size).filter(|&p| log.org_of(p) == Some(org_id)).count();
            assert_eq!(verified.events, count as u64);
        }
    }
}

#[test]
fn a_flipped_byte_in_one_envelope_is_named() {
    let log = log();
    let mut lines = ledger_export(log, log.len());
    alter(&mut lines, 77, false, |envelope| flip_payload_byte(envelope));
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::LeafHashMismatch { position: 77, .. }), "{error}");
    assert_eq!(error.position(), Some(77));
    assert!(error.to_string().contains("position 77 was altered"), "{error}");
}

#[test]
fn a_flipped_byte_with_a_recomputed_leaf_hash_is_narrowed_down_by_the_recorded_checkpoints() {
    let log = log();
    let (cp_position, cp_size) = log.checkpoints[3];
    let (_, previous_size) = log.checkpoints[2];
    let target = previous_size + 2;
    let mut lines = ledger_export(log, log.len());
    alter(&mut lines, target as usize, true, |envelope| flip_payload_byte(envelope));
    let error = verify(&lines, None).unwrap_err();
    match error {
        VerifyError::EmbeddedCheckpointMismatch { position, tree_size, altered_from } => {
            assert_eq!((position, tree_size, altered_from), (cp_position, cp_size, previous_size + 1));
        }
        other => panic!("{other}"),
    }

    // After the last recorded checkpoint, only the header's root tells, from there on.
    let (_, last_size) = *log.checkpoints.last().unwrap();
    let mut lines = ledger_export(log, log.len());
    alter(&mut lines, log.len() as usize - 1, true, |envelope| flip_payload_byte(envelope));
    let error = verify(&lines, None).unwrap_err();
    assert!(
        matches!(error, VerifyError::RootMismatch { tree_size, altered_from }
            if tree_size == log.len() && altered_from == last_size + 1),
        "{error}"
    );
    assert!(error.to_string().contains(&format!("positions {}..={}", last_size + 1, log.len())), "{error}");
}

#[test]
fn a_deleted_line_is_named() {
    let log = log();
    let mut lines = ledger_export(log, log.len());
    lines.remove(120);
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::UnexpectedPosition { expected: 120, found: 121 }), "{error}");
    assert!(error.to_string().starts_with("position 120 is missing"), "{error}");
}

#[test]
fn two_swapped_lines_or_swapped_envelopes_are_named() {
    let log = log();
    let mut lines = ledger_export(log, log.len());
    lines.swap(40, 41);
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::UnexpectedPosition { expected: 40, found: 41 }), "{error}");

    // Rows swapped in the database keep their positions but carry each other's envelope.
    let mut lines = ledger_export(log, log.len());
    let (a, b) = (lines[40].clone(), lines[41].clone());
    lines[40] = [&b"{\"position\":40"[..], &b[b.iter().position(|&c| c == b',').unwrap()..]].concat();
    lines[41] = [&b"{\"position\":41"[..], &a[a.iter().position(|&c| c == b',').unwrap()..]].concat();
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::EnvelopeElsewhere { position: 40, envelope_position: 41 }), "{error}");
}

#[test]
fn an_inserted_forged_line_is_named() {
    let log = log();
    let mut lines = ledger_export(log, log.len());
    // A copy of event 60 with another payload, with a leaf hash of its own.
    let mut forged = vec![lines[60].clone()];
    alter(&mut forged, 0, true, |envelope| flip_payload_byte(envelope));
    lines.insert(60, forged.remove(0));
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::UnexpectedPosition { expected: 61, found: 60 }), "{error}");
    assert_eq!(error.position(), Some(60));

    // Renumbering what follows does not help: the envelopes state their own positions.
    let mut renumbered = lines.clone();
    for (i, line) in renumbered.iter_mut().enumerate().skip(61) {
        let comma = line.iter().position(|&c| c == b',').unwrap();
        *line = [format!("{{\"position\":{i}").as_bytes(), &line[comma..]].concat();
    }
    let error = verify(&renumbered[..renumbered.len() - 1], None).unwrap_err();
    assert!(matches!(error, VerifyError::EnvelopeElsewhere { position: 61, envelope_position: 60 }), "{error}");
}

#[test]
fn a_truncated_tail_is_named() {
    let log = log();
    let lines = ledger_export(log, log.len());
    let error = verify(&lines[..lines.len() - 5], None).unwrap_err();
    let present = log.len() - 5;
    assert!(
        matches!(error, VerifyError::Truncated { present: p, tree_size } if p == present && tree_size == log.len())
    );
    assert_eq!(error.position(), Some(present + 1));
    assert!(error.to_string().contains(&format!("events {}..={} are missing", present + 1, log.len())), "{error}");
    // An empty body under a checkpoint is truncated from the first event.
    assert!(matches!(verify(&lines[..1], None), Err(VerifyError::Truncated { present: 0, .. })));
}

#[test]
fn a_wrong_leaf_hash_is_named() {
    let log = log();
    let mut lines = ledger_export(log, log.len());
    lines[150] = event_line(150, &[0xAB; 32], None, &log.envelopes[149]);
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::LeafHashMismatch { position: 150, recorded: [0xAB, ..], .. }), "{error}");
}

#[test]
fn a_line_beyond_the_checkpoint_or_a_damaged_line_is_named() {
    let log = log();
    let mut lines = ledger_export(log, 100);
    lines.push(event_line(101, &log.leaves[100], None, &log.envelopes[100]));
    assert!(matches!(verify(&lines, None), Err(VerifyError::BeyondTreeSize { position: 101, tree_size: 100 })));

    let mut lines = ledger_export(log, 100);
    lines[30].truncate(50);
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::MalformedLine { line: 31, after_position: 29, .. }), "{error}");
    assert_eq!(error.position(), Some(30));

    // Bytes that are not JSON, nor UTF-8, hashed by a forger: reported, no panic.
    let mut lines = ledger_export(log, 100);
    alter(&mut lines, 12, true, |envelope| envelope[5] = 0xFF);
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::MalformedEnvelope { position: 12, .. }), "{error}");
}

#[test]
fn stream_versions_and_org_sequences_must_be_contiguous() {
    let log = log();
    let mut lines = ledger_export(log, log.len());
    // A forger who rewrites the version and recomputes the hash.
    let target = (1..=log.len()).find(|&p| log.org_of(p).is_some() && p > 50).unwrap() as usize;
    alter(&mut lines, target, true, |envelope| {
        let text = String::from_utf8(envelope.clone()).unwrap();
        let version = text.split("\"version\":").nth(1).unwrap().split(',').next().unwrap().to_owned();
        *envelope = text.replacen(&format!("\"version\":{version}"), &format!("\"version\":{}", 99), 1).into_bytes();
    });
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::StreamVersionGap { position, found: 99, .. } if position == target as u64));

    let mut lines = ledger_export(log, log.len());
    alter(&mut lines, target, true, |envelope| {
        let text = String::from_utf8(envelope.clone()).unwrap();
        let sequence = text.split("\"orgSequence\":").nth(1).unwrap().split(',').next().unwrap().to_owned();
        *envelope = text.replacen(&format!("\"orgSequence\":{sequence}"), "\"orgSequence\":999", 1).into_bytes();
    });
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::OrgSequenceGap { position, found: 999, .. } if position == target as u64));
}

#[test]
fn checkpoints_signed_by_another_key_are_refused() {
    let log = log();
    // The header's.
    let mut lines = ledger_export(log, log.len());
    let forged = other_key().sign(log.len(), merkle::root(&log.leaves), SIGNED_AT).unwrap();
    lines[0] = header("ledger", None, log.len(), merkle::root(&log.leaves), &forged);
    let error = verify(&lines, None).unwrap_err();
    assert!(matches!(error, VerifyError::HeaderCheckpoint(CheckpointError::BadSignature(_))), "{error}");
    assert_eq!(error.position(), None);

    // One recorded in the log.
    let forged_log = block_on(build(60, &other_key()));
    let (first_checkpoint, _) = forged_log.checkpoints[0];
    let error = verify(&ledger_export(&forged_log, forged_log.len()), None).unwrap_err();
    assert!(
        matches!(error, VerifyError::EmbeddedCheckpointInvalid { position, .. } if position == first_checkpoint),
        "{error}"
    );

    // A header whose size or root is not its checkpoint's.
    let mut lines = ledger_export(log, log.len());
    lines[0] = header("ledger", None, log.len() - 1, merkle::root(&log.leaves), &note(log, log.len()));
    assert!(matches!(verify(&lines, None), Err(VerifyError::HeaderDisagrees { header_size, .. })
            if header_size == log.len() - 1));
}

#[test]
fn a_trusted_checkpoint_must_verify_and_match_its_prefix() {
    let log = log();
    let lines = ledger_export(log, log.len());
    let earlier = note(log, 200);
    let verified = verify(&lines, Some(&earlier)).unwrap();
    assert_eq!(verified.trusted.map(|trusted| trusted.tree_size), Some(200));

    let split_view = key().sign(200, [3; 32], SIGNED_AT).unwrap();
    let error = verify(&lines, Some(&split_view)).unwrap_err();
    let (_, proven) = *log.checkpoints.iter().rev().find(|(position, _)| *position <= 200).unwrap();
    assert!(
        matches!(error, VerifyError::TrustedMismatch { tree_size: 200, altered_from } if altered_from == proven + 1),
        "{error}"
    );

    let later = note(log, log.len());
    let error = verify(&ledger_export(log, 250), Some(&later)).unwrap_err();
    assert!(matches!(error, VerifyError::ExportOlderThanTrusted { export_size: 250, .. }), "{error}");
    assert!(error.to_string().contains(&format!("events 251..={} are missing", log.len())), "{error}");

    let forged = other_key().sign(200, merkle::root(&log.leaves[..200]), SIGNED_AT).unwrap();
    assert!(matches!(verify(&lines, Some(&forged)), Err(VerifyError::TrustedCheckpoint(_))));
}

#[test]
fn an_altered_inclusion_proof_is_named() {
    let log = log();
    let lines = org_export(log, org(2), log.len());
    let position_of = |line: &[u8]| -> u64 {
        let text = String::from_utf8_lossy(line);
        text["{\"position\":".len()..].split(',').next().unwrap().parse().unwrap()
    };
    let target = position_of(&lines[5]);
    let mut altered = lines.clone();
    let proof_at = altered[5].windows(18).position(|w| w == b"\"inclusionProof\":[").unwrap() + 20;
    altered[5][proof_at] = if altered[5][proof_at] == b'0' { b'1' } else { b'0' };
    let error = verify(&altered, None).unwrap_err();
    assert!(
        matches!(error, VerifyError::InclusionProof { position, error: ProofError::RootMismatch, .. }
            if position == target),
        "{error}"
    );

    // A proof for another position, or one hash short.
    let mut altered = lines.clone();
    let proof = merkle::inclusion_proof(&log.leaves, target, log.len()).unwrap();
    altered[5] =
        event_line(target, &log.leaves[target as usize - 1], Some(&proof), &log.envelopes[target as usize - 1]);
    assert!(matches!(verify(&altered, None), Err(VerifyError::InclusionProof { position, .. }) if position == target));
    let proof = merkle::inclusion_proof(&log.leaves, target - 1, log.len()).unwrap();
    altered[5] =
        event_line(target, &log.leaves[target as usize - 1], Some(&proof[1..]), &log.envelopes[target as usize - 1]);
    assert!(matches!(
        verify(&altered, None),
        Err(VerifyError::InclusionProof { error: ProofError::WrongProofLength { .. }, .. })
    ));
}

#[test]
fn an_omitted_or_foreign_org_entry_is_named() {
    let log = log();
    let lines = org_export(log, org(1), log.len());
    let position_of = |line: &[u8]| -> u64 {
        let text = String::from_utf8_lossy(line);
        text["{\"position\":".len()..].split(',').next().unwrap().parse().unwrap()
    };
    let mut omitted = lines.clone();
    omitted.remove(10);
    let error = verify(&omitted, None).unwrap_err();
    let next = position_of(&lines[11]);
    assert!(
        matches!(error, VerifyError::OrgSequenceGap { position, expected: 10, found: 11, .. } if position == next),
        "{error}"
    );
    assert!(error.to_string().contains("entry 10 is missing"), "{error}");

    // Another organization's event, with its genuine proof.
    let foreign = (1..=log.len()).find(|&p| log.org_of(p) == Some(org(3)) && p > position_of(&lines[3])).unwrap();
    let mut mixed = lines[..4].to_vec();
    let proof = merkle::inclusion_proof(&log.leaves, foreign - 1, log.len()).unwrap();
    mixed.push(event_line(
        foreign,
        &log.leaves[foreign as usize - 1],
        Some(&proof),
        &log.envelopes[foreign as usize - 1],
    ));
    let error = verify(&mixed, None).unwrap_err();
    assert!(matches!(error, VerifyError::WrongOrganization { position, found: Some(found), .. }
            if position == foreign && found == org(3)));

    // Reordered or repeated lines.
    let mut swapped = lines.clone();
    swapped.swap(7, 8);
    let error = verify(&swapped, None).unwrap_err();
    let later = position_of(&lines[8]);
    assert!(
        matches!(error, VerifyError::OrgSequenceGap { position, expected: 7, found: 8, .. } if position == later),
        "{error}"
    );
    let mut repeated = lines.clone();
    repeated.insert(8, lines[7].clone());
    let error = verify(&repeated, None).unwrap_err();
    let earlier = position_of(&lines[7]);
    assert!(matches!(error, VerifyError::PositionNotIncreasing { found, .. } if found == earlier), "{error}");

    // A trusted checkpoint must be the one the proofs lead to.
    assert!(verify(&lines, Some(&note(log, log.len()))).is_ok());
    assert!(matches!(
        verify(&lines, Some(&note(log, 200))),
        Err(VerifyError::NotUnderTrusted { trusted_size: 200, .. })
    ));
}

#[test]
fn a_header_that_is_not_an_export_is_refused() {
    let log = log();
    let lines = ledger_export(log, 10);
    for bad in [
        &b""[..],
        b"not json",
        br#"{"format":"other","version":1,"scope":"ledger","treeSize":1,"rootHash":"","checkpoint":""}"#,
        br#"{"format":"credledger-export","version":2,"scope":"ledger","treeSize":1,"rootHash":"","checkpoint":""}"#,
        br#"{"format":"credledger-export","version":1,"scope":"organization","treeSize":1,"rootHash":"","checkpoint":""}"#,
    ] {
        let mut altered = lines.clone();
        altered[0] = bad.to_vec();
        assert!(matches!(verify(&altered, None), Err(VerifyError::Header(_))), "{}", String::from_utf8_lossy(bad));
    }
    assert!(matches!(verify_export(Cursor::new(""), &verifier(), None, |_| {}), Err(VerifyError::Header(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_flipped_bit_of_any_envelope_is_found_at_its_position(
        size in 1..=300u64, pick: u64, offset: usize, bit in 0..8u32,
    ) {
        let log = log();
        let target = pick % size + 1;
        let mut lines = ledger_export(log, size);
        alter(&mut lines, target as usize, false, |envelope| {
            let at = offset % envelope.len();
            envelope[at] ^= 1 << bit;
        });
        // A flip that makes a newline splits the line; the position is named either way.
        let reparsed: Vec<Vec<u8>> = lines.join(&b'\n').split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        let error = verify(&reparsed, None).unwrap_err();
        prop_assert_eq!(error.position(), Some(target), "{}", error);
    }

    #[test]
    fn any_removed_or_repeated_line_is_found(size in 2..=300u64, pick: u64, repeat: bool) {
        let log = log();
        let target = (pick % size + 1) as usize;
        let mut lines = ledger_export(log, size);
        if repeat {
            let copy = lines[target].clone();
            lines.insert(target, copy);
        } else {
            lines.remove(target);
        }
        let error = verify(&lines, None).unwrap_err();
        prop_assert_eq!(error.position(), Some(target as u64), "{}", error);
    }
}

/// A log, with a consistent chain, in which a use of a machine token was recorded after its
/// revocation (as a writer that did not keep the invariant would have recorded it), followed
/// by other events. Returns the log and the late use's position.
async fn log_with_a_use_after_revocation() -> (Log, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::open(&format!("sqlite://{}", dir.path().join("events.db").display())).await.unwrap();
    let token = Uuid::from_u128(0x0B_0001).hyphenated().to_string();
    let (lifecycle, usage) = (format!("mt-{token}"), format!("usage-{token}"));
    let appended = [
        (lifecycle.as_str(), "MachineTokenCreated"),
        (usage.as_str(), "CredentialUsed"),
        (lifecycle.as_str(), "MachineTokenRevoked"),
        (usage.as_str(), "CredentialAccessDenied"),
        (usage.as_str(), "CredentialUsed"),
        ("mt-other", "MachineTokenCreated"),
    ];
    for (n, (stream, event_type)) in (0u64..).zip(appended) {
        let payload = json!({"credentialId": token, "n": n});
        store.append(stream, ExpectedVersion::Any, vec![event(Some(org(1)), n, event_type, payload)]).await.unwrap();
    }
    let rows = store.read_raw(1, 100).await.unwrap();
    store.close().await;
    let log = Log {
        orgs: rows.iter().map(|row| row.org_id.as_deref().map(|id| OrgId::parse(id).unwrap())).collect(),
        leaves: rows.iter().map(|row| <[u8; 32]>::try_from(row.leaf_hash.as_slice()).unwrap()).collect(),
        envelopes: rows.into_iter().map(|row| row.envelope.to_vec()).collect(),
        checkpoints: Vec::new(),
    };
    (log, 5)
}

#[test]
fn a_use_recorded_after_its_credentials_revocation_is_named_from_the_export_alone() {
    let (log, late) = block_on(log_with_a_use_after_revocation());
    for lines in [ledger_export(&log, log.len()), org_export(&log, org(1), log.len())] {
        let error = verify(&lines, None).unwrap_err();
        match &error {
            VerifyError::UseAfterStop { position, stopped_at, stopped_by, .. } => {
                assert_eq!((*position, *stopped_at, stopped_by.as_str()), (late, 3, "MachineTokenRevoked"));
            }
            other => panic!("expected UseAfterStop, got {other:?}"),
        }
        assert_eq!((error.position(), error.code()), (Some(late), "use_after_stop"));
        assert!(error.to_string().contains("position 3"), "{error}");
    }
    // The same log up to the use before the revocation, and with the denial after it, verifies.
    verify(&ledger_export(&log, late - 1), None).unwrap();
}
