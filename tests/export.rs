//! `GET /v1/audit/:orgId/export`: the organization's exact recorded envelopes (NDJSON) up to the
//! latest signed checkpoint, each verifiable against its leaf hash offline, or a CSV view;
//! nobody else's events.

mod support;

use serde_json::json;
use support::Server;

/// (position, envelope bytes, leaf hash) of every event of the log, from the SQLite file.
fn raw_log(server: &Server) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let connection = rusqlite::Connection::open_with_flags(
        server.data_dir.join("events.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement =
        connection.prepare("SELECT position, envelope, leaf_hash FROM events ORDER BY position").unwrap();
    statement
        .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn export(base_url: &str, org: &str, query: &str, token: &str) -> (u16, String, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{base_url}/v1/audit/{org}/export{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, response.bytes().await.unwrap().to_vec())
}

/// The exact envelope bytes of an export line, `{"position":…,"leafHash":…,…,"envelope":<bytes>}`.
fn envelope_of(line: &[u8]) -> &[u8] {
    const KEY: &[u8] = b",\"envelope\":";
    let at = line.windows(KEY.len()).position(|window| window == KEY).expect("an envelope field");
    line[at + KEY.len()..].strip_suffix(b"}").expect("the envelope comes last")
}

#[tokio::test]
async fn an_export_is_the_organizations_exact_envelopes_verifiable_offline() {
    let server = Server::start_with(&["--checkpoint-interval-ms", "100"]).unwrap();
    let admin = server.admin();
    let (org, _, owner_token) = admin.create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (token_id, token) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    assert_eq!(server.client(&token).with_user_agent("=cmd|x").get(&format!("/v1/projects/{org}")).await.status, 200);
    owner.post_empty(&format!("/v1/machine-tokens/{org}/{token_id}/disable")).await;
    let (other, _, other_token) = admin.create_org("globex", "ops@globex.example").await;
    server.client(&other_token).create_token(&other, json!({ "name": "theirs", "environmentHint": "prod" })).await;

    // The NDJSON export ends at the latest checkpoint: wait until one covers the activity.
    admin.checkpoint_covering(support::last_event_to_sign(&server.data_dir)).await;
    let (status, content_type, body) = export(&server.base_url, &org, "", &owner_token).await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-ndjson"));
    let mut lines = body.split(|b| *b == b'\n').filter(|line| !line.is_empty());
    let header: serde_json::Value = serde_json::from_slice(lines.next().expect("a header line")).unwrap();
    assert_eq!((header["scope"].as_str(), header["orgId"].as_str()), (Some("organization"), Some(org.as_str())));
    let lines: Vec<&[u8]> = lines.collect();
    let expected: Vec<(u64, Vec<u8>, Vec<u8>)> = raw_log(&server)
        .into_iter()
        .filter(|(_, envelope, _)| {
            serde_json::from_slice::<serde_json::Value>(envelope).unwrap()["orgId"] == org.as_str()
        })
        .collect();
    assert!(expected.len() >= 5, "org created, owner, PAT, token, use, disable: {}", expected.len());
    assert_eq!(lines.len(), expected.len(), "every event of the organization and no other's");
    for (line, (position, envelope, leaf_hash)) in lines.iter().zip(&expected) {
        let entry: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(entry["position"].as_u64(), Some(*position));
        assert_eq!(envelope_of(line), envelope.as_slice(), "position {position}: the exact stored bytes");
        // Offline verification: the leaf hash is SHA-256(0x00 ‖ envelope).
        assert_eq!(credledger_store::leaf_hash(envelope_of(line)).to_vec(), *leaf_hash, "position {position}");
        assert_eq!(entry["leafHash"].as_str(), Some(hex::encode(leaf_hash).as_str()), "position {position}");
    }
    let sequences: Vec<u64> = lines
        .iter()
        .map(|line| {
            serde_json::from_slice::<serde_json::Value>(line).unwrap()["envelope"]["orgSequence"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "contiguous per-organization sequences");

    let (status, content_type, csv) = export(&server.base_url, &org, "?format=csv", &owner_token).await;
    assert_eq!((status, content_type.as_str()), (200, "text/csv; charset=utf-8"));
    let csv = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "position,orgSequence,recordedAt,type,stream,actorKind,actorId,ip,userAgent,leafHash");
    assert_eq!(rows.len(), expected.len() + 1);
    assert!(csv.contains(",'=cmd|x,"), "a client-chosen user agent never becomes a formula: {csv}");
    assert!(!csv.contains("globex") && !csv.contains("theirs"));
}

#[tokio::test]
async fn only_owners_and_admins_export_and_bad_formats_are_refused() {
    let server = Server::start().unwrap();
    let (org, _, owner_token) = server.admin().create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (_, member_token) = owner.add_member_with_token(&org, "dev@acme.example", "member").await;
    let (_, machine) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    let refused = |status: u16, body: &[u8], code: &str| {
        let problem: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (status, problem["code"].as_str()),
            (if code == "invalid_query" { 400 } else { 403 }, Some(code)),
            "{problem}"
        );
    };
    let (status, _, body) = export(&server.base_url, &org, "", &member_token).await;
    refused(status, &body, "insufficient_role");
    let (status, _, body) = export(&server.base_url, &org, "", &machine).await;
    refused(status, &body, "machine_credential_forbidden");
    let (status, _, body) = export(&server.base_url, &org, "?format=xml", &owner_token).await;
    refused(status, &body, "invalid_query");
    let (other, _, _) = server.admin().create_org("globex", "ops@globex.example").await;
    let (status, _, _) = export(&server.base_url, &other, "", &owner_token).await;
    assert_eq!(status, 404, "another organization's export does not exist for us");
}
