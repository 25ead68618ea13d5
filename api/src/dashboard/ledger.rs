//! The Ledger page: the latest signed checkpoint, the verifier key, and the commands an auditor
//! runs to check the trail offline without trusting this server.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::layout::{Section, ago_text, page, respond, text};
use super::session::Signed;
use crate::AppState;
use crate::routes::ledger::{key, latest_checkpoint};

pub async fn show(State(app): State<AppState>, signed: Signed) -> Response {
    let key = serde_json::to_value(key(State(app.clone())).await.0).unwrap_or_default();
    let checkpoint = latest_checkpoint(State(app.clone()), signed.caller.clone())
        .await
        .map(|checkpoint| serde_json::to_value(checkpoint.0).unwrap_or_default());
    let now = app.clock.now();
    let url = app.config.public_url.trim_end_matches('/');
    let body = html! {
        p.lead {
            "Every event is a leaf of a Merkle tree; the server signs a checkpoint of the tree at most once a second. "
            "An auditor verifies an export against a checkpoint and the verifier key, offline."
        }
        h2 { "Latest checkpoint" }
        @match &checkpoint {
            Ok(checkpoint) => {
                dl.facts {
                    dt { "Signed" } dd { (ago_text(now, &checkpoint["signedAt"])) }
                    dt { "Tree size" } dd { (checkpoint["treeSize"].as_u64().unwrap_or_default()) " events" }
                    dt { "Root hash" } dd { code.id { (text(checkpoint, "rootHash")) } }
                    dt { "Origin" } dd { code { (text(checkpoint, "origin")) } }
                }
                h2 { "Signed note" }
                pre.note { (text(checkpoint, "note")) }
            }
            Err(problem) => p.empty { (problem.detail) }
        }
        h2 { "Verifier key" }
        p { "Pin this key; give it to " code { "credledger audit verify --key" } "." }
        pre.note { (text(&key, "verifierKey")) }
        h2 { "What an auditor runs" }
        pre.note {
            "export CREDLEDGER_URL=" (url) "\n"
            "credledger audit key > ledger.vkey            # compare it once with the key above\n"
            "credledger audit checkpoint > checkpoint.txt\n"
            "credledger audit export --org " (signed.org) " --out trail.ndjson\n"
            "credledger audit verify --export trail.ndjson --checkpoint checkpoint.txt --key ledger.vkey -o table\n"
            "credledger audit verify --state ledger-monitor.json --key ledger.vkey   # monitor: each new checkpoint extends the last\n"
        }
        p.muted { "See docs/auditing.md for inclusion and consistency proofs and monitoring mode." }
    };
    respond(StatusCode::OK, page(&signed, Section::Ledger, "Ledger", &body))
}
