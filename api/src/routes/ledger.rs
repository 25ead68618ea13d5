//! `/v1/ledger`: the verifiable ledger (DESIGN.md §7). The public key, signed checkpoints,
//! inclusion and consistency proofs, and the full export a verifier recomputes every leaf from.
//!
//! The key is public, like a JWKS. Checkpoints and proofs reveal only hashes and sizes and are
//! open to any authenticated caller; the full export holds every organization's events and is
//! the server admin's.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, Utc};
use credledger_projections::ledger::CheckpointRow;
use credledger_store::RawEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::Query;
use crate::problem::{Problem, ProblemDocument};
use crate::views::Page;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(key))
        .routes(routes!(latest_checkpoint))
        .routes(routes!(checkpoints))
        .routes(routes!(inclusion))
        .routes(routes!(consistency))
        .routes(routes!(export))
}

/// Rows read from the log per page of an export.
const PAGE: usize = 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LedgerKeyView {
    /// The ledger's name, which every checkpoint carries.
    origin: String,
    /// The 4-byte key id every signature line names, in hex.
    key_id: String,
    /// The raw Ed25519 public key, base64.
    public_key: String,
    /// The C2SP verifier key `<origin>+<keyId>+<base64>`: save it and give it to `audit verify --key`.
    verifier_key: String,
}

/// The ledger's public key (no authentication: it is what verifiers pin).
#[utoipa::path(get, path = "/v1/ledger/key", tag = "ledger", security(()),
    responses((status = 200, body = LedgerKeyView)))]
pub(crate) async fn key(State(app): State<AppState>) -> Json<LedgerKeyView> {
    let key = app.ledger.key();
    Json(LedgerKeyView {
        origin: key.origin().to_owned(),
        key_id: format!("{:08x}", key.key_id()),
        public_key: base64::engine::general_purpose::STANDARD.encode(key.public_key()),
        verifier_key: key.verifier_key().to_owned(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckpointView {
    origin: String,
    /// The number of events the checkpoint covers: positions 1..=treeSize.
    tree_size: u64,
    /// The Merkle root over them, hex.
    root_hash: String,
    #[serde(with = "credledger_domain::time_format")]
    signed_at: DateTime<Utc>,
    /// The position of the CheckpointSigned event that recorded it.
    position: u64,
    /// The signed note (C2SP signed-note text): save it as the file `audit verify --checkpoint` reads.
    note: String,
}

impl From<CheckpointRow> for CheckpointView {
    fn from(row: CheckpointRow) -> Self {
        Self {
            origin: row.origin,
            tree_size: row.tree_size,
            root_hash: hex::encode(row.root_hash),
            signed_at: row.signed_at,
            position: row.position,
            note: row.note,
        }
    }
}

fn no_checkpoint() -> Problem {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "no_checkpoint",
        "no checkpoint has been signed yet; one is signed within a second of the first event",
    )
}

/// The latest signed checkpoint.
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "ledger",
    responses((status = 200, body = CheckpointView), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn latest_checkpoint(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<CheckpointView>, Problem> {
    caller.require_human()?;
    let latest = app.projections.latest_checkpoint()?.ok_or_else(no_checkpoint)?;
    Ok(Json(latest.into()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CheckpointsQuery {
    /// Only checkpoints of exactly this tree size.
    tree_size: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(
        pattern = r"^([0-9]{1,19}|0[0-9]{19}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]{1}|1844674407370955161[0-4]|18446744073709551615)$"
    )]
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Past checkpoints, newest first.
#[utoipa::path(get, path = "/v1/ledger/checkpoints", tag = "ledger", params(CheckpointsQuery),
    responses((status = 200, body = Page<CheckpointView>), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn checkpoints(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<CheckpointsQuery>,
) -> Result<Json<Page<CheckpointView>>, Problem> {
    caller.require_human()?;
    // Positions are stored as 64-bit signed integers: a larger size names no checkpoint.
    if query.tree_size.is_some_and(|size| i64::try_from(size).is_err()) {
        return Err(Problem::bad_request("invalid_query", "`treeSize` is a log size").with_field("treeSize"));
    }
    let before = query
        .cursor
        .as_deref()
        .map(|cursor| {
            crate::extract::position(cursor).ok_or_else(|| {
                Problem::bad_request("invalid_query", "`cursor` takes the `nextCursor` of a previous page")
                    .with_field("cursor")
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(
            Problem::bad_request("invalid_query", format!("`limit` is between 1 and {MAX_LIMIT}")).with_field("limit")
        );
    }
    let mut rows = app.projections.checkpoints(query.tree_size, before, limit + 1)?;
    let next_cursor = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(|row| row.position.to_string()).unwrap_or_default()
    });
    Ok(Json(Page { items: rows.into_iter().map(Into::into).collect(), next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct InclusionQuery {
    /// The event's position (from 1).
    position: u64,
    /// The size of the tree to prove inclusion in: a checkpoint's `treeSize`.
    tree_size: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct InclusionProof {
    position: u64,
    /// position − 1, the index RFC 6962 proofs are stated for.
    leaf_index: u64,
    tree_size: u64,
    /// The event's leaf hash, hex.
    leaf_hash: String,
    /// The audit path, leaf to root, hex.
    proof: Vec<String>,
}

/// The proof that the event at `position` is in the tree of `treeSize` events.
#[utoipa::path(get, path = "/v1/ledger/proofs/inclusion", tag = "ledger", params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn inclusion(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<InclusionQuery>,
) -> Result<Json<InclusionProof>, Problem> {
    caller.require_human()?;
    let head = app.store.head().await?;
    check_size("treeSize", query.tree_size, head)?;
    if query.position == 0 || query.position > query.tree_size {
        return Err(
            Problem::bad_request("invalid_query", "`position` is between 1 and `treeSize`").with_field("position")
        );
    }
    let leaf = app.store.read_leaf_hashes(query.position, 1).await?;
    let leaf = leaf.first().ok_or_else(|| Problem::not_found("event"))?;
    let mut cache = crate::ledger::LeafCache::default();
    let proof = app.ledger.inclusion_proof(query.position - 1, query.tree_size, &mut cache).await?;
    Ok(Json(InclusionProof {
        position: query.position,
        leaf_index: query.position - 1,
        tree_size: query.tree_size,
        leaf_hash: hex::encode(leaf),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    /// The older tree size (a checkpoint you verified before), at least 1.
    from: u64,
    /// The newer tree size.
    to: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConsistencyProof {
    from: u64,
    to: u64,
    /// Hex.
    proof: Vec<String>,
}

/// The proof that the tree of `to` events extends the tree of `from` events unchanged.
#[utoipa::path(get, path = "/v1/ledger/proofs/consistency", tag = "ledger", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn consistency(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, Problem> {
    caller.require_human()?;
    let head = app.store.head().await?;
    check_size("to", query.to, head)?;
    if query.from == 0 || query.from > query.to {
        return Err(Problem::bad_request("invalid_query", "`from` is between 1 and `to`").with_field("from"));
    }
    let proof = app.ledger.consistency_proof(query.from, query.to).await?;
    Ok(Json(ConsistencyProof { from: query.from, to: query.to, proof: proof.iter().map(hex::encode).collect() }))
}

fn check_size(field: &str, size: u64, head: u64) -> Result<(), Problem> {
    if size == 0 || size > head {
        return Err(Problem::bad_request(
            "invalid_query",
            format!("`{field}` is between 1 and the log's size ({head})"),
        )
        .with_field(field));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// Export under the checkpoint of this tree size (default: the latest checkpoint).
    tree_size: Option<u64>,
}

/// The whole log under a checkpoint, as NDJSON: a header line naming the checkpoint, then one
/// line per position `1..=treeSize` with the recorded leaf hash and the exact stored envelope.
/// Server admin only. Rows are sent as stored, unchecked, so a damaged log exports as it is and
/// `credledger audit verify` names what is wrong.
#[utoipa::path(get, path = "/v1/ledger/export", tag = "ledger", params(ExportQuery),
    responses((status = 200, description = "application/x-ndjson: a header line, then one line per event"),
        (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn export(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<ExportQuery>,
) -> Result<Response, Problem> {
    if !caller.is_server_admin() {
        return Err(Problem::forbidden("server_admin_only", "only the server-admin token exports the whole ledger"));
    }
    let checkpoint = export_checkpoint(&app, query.tree_size).await?;
    let header = export_header("ledger", None, &checkpoint);
    let tree_size = checkpoint.tree_size;
    let store = app.store.clone();
    let pages = futures::stream::unfold(1u64, move |next| {
        let store = store.clone();
        async move {
            if next > tree_size {
                return None;
            }
            let want = PAGE.min((tree_size - next + 1) as usize);
            match store.read_raw(next, want).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let after = rows.last().map_or(tree_size + 1, |row| row.position + 1);
                    let mut chunk = Vec::with_capacity(rows.len() * 512);
                    for row in rows.iter().filter(|row| row.position <= tree_size) {
                        write_entry(&mut chunk, row, None);
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), after))
                }
                Err(error) => {
                    tracing::error!(%error, "reading the log for a ledger export failed");
                    Some((Err(std::io::Error::other("the log could not be read")), tree_size + 1))
                }
            }
        }
    });
    let body = futures::StreamExt::chain(futures::stream::once(async move { Ok(Bytes::from(header)) }), pages);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|error| Problem::internal("building the export response", &error))
}

/// The checkpoint an export is made under: the one of `tree_size`, or else the first one that
/// covers the log as it was when the request arrived (the signer makes one within a second), so
/// an export includes everything recorded before it was asked for.
pub(crate) async fn export_checkpoint(app: &AppState, tree_size: Option<u64>) -> Result<CheckpointRow, Problem> {
    if let Some(size) = tree_size {
        return app
            .projections
            .checkpoints(Some(size), None, 1)?
            .into_iter()
            .next()
            .ok_or_else(|| Problem::not_found("checkpoint of that treeSize").with_field("treeSize"));
    }
    let head = app.store.head().await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let latest = app.projections.latest_checkpoint()?;
        match latest {
            // On an idle ledger the newest checkpoint is itself the head event: it covers every
            // event before it, which is everything there is to export.
            Some(latest)
                if latest.tree_size >= head || (latest.position == head && latest.position == latest.tree_size + 1) =>
            {
                return Ok(latest);
            }
            Some(latest) if tokio::time::Instant::now() >= deadline => return Ok(latest),
            None if tokio::time::Instant::now() >= deadline => return Err(no_checkpoint()),
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// The first line of an export: what it covers and the signed checkpoint it is verified against.
pub(crate) fn export_header(scope: &str, org: Option<&str>, checkpoint: &CheckpointRow) -> String {
    let mut header = serde_json::json!({
        "format": "credledger-export",
        "version": 1,
        "scope": scope,
        "treeSize": checkpoint.tree_size,
        "rootHash": hex::encode(checkpoint.root_hash),
        "checkpoint": checkpoint.note,
    });
    if let Some(org) = org {
        header["orgId"] = serde_json::Value::String(org.to_owned());
    }
    let mut line = header.to_string();
    line.push('\n');
    line
}

/// One export line: `{"position":P,"leafHash":"…"[,"inclusionProof":[…]],"envelope":<stored bytes>}`.
/// The envelope goes last and verbatim, so a verifier takes the bytes after `,"envelope":` up to
/// the final `}` as exactly what was hashed.
pub(crate) fn write_entry(out: &mut Vec<u8>, row: &RawEvent, proof: Option<&[[u8; 32]]>) {
    use std::io::Write;
    let _ = write!(out, "{{\"position\":{},\"leafHash\":\"{}\"", row.position, hex::encode(&row.leaf_hash));
    if let Some(proof) = proof {
        out.extend_from_slice(b",\"inclusionProof\":[");
        for (i, hash) in proof.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, "\"{}\"", hex::encode(hash));
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"envelope\":");
    out.extend_from_slice(&row.envelope);
    out.extend_from_slice(b"}\n");
}
