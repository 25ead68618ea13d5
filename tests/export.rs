//! `GET /v1/audit/:orgId/export`: the organization's exact recorded envelopes (NDJSON) under a
//! signed checkpoint, each with its leaf hash and inclusion proof, verifiable offline; or a CSV
//! view; nobody else's events.

mod support;

use serde_json::json;
use support::Server;

/// (position, envelope bytes, leaf hash) of every event of the log, from the SQLite file.
fn raw_log(server: &Server) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    support::raw_log(&server.data_dir)
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

#[tokio::test]
async fn an_export_is_the_organizations_exact_envelopes_verifiable_offline() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let (org, _, owner_token) = admin.create_org("acme", "ops@acme.example").await;
    let owner = server.client(&owner_token);
    let (token_id, token) = owner.create_token(&org, json!({ "name": "ci", "environmentHint": "prod" })).await;
    assert_eq!(server.client(&token).with_user_agent("=cmd|x").get(&format!("/v1/projects/{org}")).await.status, 200);
    owner.post_empty(&format!("/v1/machine-tokens/{org}/{token_id}/disable")).await;
    let (other, _, other_token) = admin.create_org("globex", "ops@globex.example").await;
    server.client(&other_token).create_token(&other, json!({ "name": "theirs", "environmentHint": "prod" })).await;

    let (status, content_type, body) = export(&server.base_url, &org, "", &owner_token).await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-ndjson"));
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
    let header: serde_json::Value = serde_json::from_slice(lines[0]).unwrap();
    assert_eq!(header["format"], "credledger-export");
    assert_eq!(header["scope"], "organization");
    assert_eq!(header["orgId"], org.as_str());
    let tree_size = header["treeSize"].as_u64().unwrap();
    let root: [u8; 32] = hex::decode(header["rootHash"].as_str().unwrap()).unwrap().try_into().unwrap();
    let key = reqwest::get(format!("{}/v1/ledger/key", server.base_url)).await.unwrap();
    let key: serde_json::Value = key.json().await.unwrap();
    let verifier = credledger_store::checkpoint::CheckpointVerifier::new(key["verifierKey"].as_str().unwrap()).unwrap();
    let checkpoint =
        verifier.verify(header["checkpoint"].as_str().unwrap()).expect("the header's checkpoint is signed");
    assert_eq!((checkpoint.tree_size, checkpoint.root_hash), (tree_size, root));

    let expected: Vec<(u64, Vec<u8>, Vec<u8>)> = raw_log(&server)
        .into_iter()
        .filter(|(position, envelope, _)| {
            *position <= tree_size
                && serde_json::from_slice::<serde_json::Value>(envelope).unwrap()["orgId"] == org.as_str()
        })
        .collect();
    assert!(expected.len() >= 5, "org created, owner, PAT, token, use, disable: {}", expected.len());
    let entries = &lines[1..];
    assert_eq!(entries.len(), expected.len(), "every event of the organization up to the checkpoint, no other's");
    let mut sequences = Vec::new();
    for (line, (position, envelope, leaf_hash)) in entries.iter().zip(&expected) {
        let text = std::str::from_utf8(line).unwrap();
        let at = text.find(",\"envelope\":").unwrap();
        let bytes = &line[at + ",\"envelope\":".len()..line.len() - 1];
        assert_eq!(bytes, envelope.as_slice(), "position {position}: the exact stored bytes");
        let entry: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(entry["position"], *position);
        assert_eq!(entry["leafHash"], hex::encode(leaf_hash));
        // Offline verification: the leaf hash is SHA-256(0x00 ‖ envelope), and it is in the tree.
        let leaf = credledger_store::leaf_hash(bytes);
        assert_eq!(leaf.to_vec(), *leaf_hash, "position {position}");
        let proof: Vec<[u8; 32]> = entry["inclusionProof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hash| hex::decode(hash.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        credledger_store::merkle::verify_inclusion(&leaf, position - 1, tree_size, &proof, &root)
            .unwrap_or_else(|error| panic!("position {position}: {error}"));
        assert!(
            credledger_store::merkle::verify_inclusion(&leaf, *position, tree_size, &proof, &root).is_err(),
            "the proof is for this position only"
        );
        sequences.push(entry["envelope"]["orgSequence"].as_u64().unwrap());
    }
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "contiguous per-organization sequences");
    // The whole export verifies offline with the verifier `credledger audit verify` runs.
    let verified = credledger_store::verify::verify_export(&body[..], &verifier, None, |_| {}).unwrap();
    assert_eq!(verified.events, expected.len() as u64);

    let (status, content_type, csv) = export(&server.base_url, &org, "?format=csv", &owner_token).await;
    assert_eq!((status, content_type.as_str()), (200, "text/csv; charset=utf-8"));
    let csv = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "position,orgSequence,recordedAt,type,stream,actorKind,actorId,ip,userAgent,leafHash");
    assert!(rows.len() > expected.len(), "the CSV runs to the head: {} rows", rows.len());
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
