//! `GET /v1/audit/:orgId/export`: an organization's recorded events, streamed. NDJSON is
//! verifiable offline: a header line names the signed checkpoint the export was made under, and
//! each event's line carries its recorded leaf hash, its inclusion proof against that checkpoint,
//! and the exact stored envelope bytes (whose per-organization sequence numbers are contiguous,
//! so an omitted event shows as a gap). CSV is a flat view for spreadsheets. Memory stays
//! constant whatever the log's size: the log is read in pages as the response is written.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use credledger_domain::OrgId;
use credledger_store::RecordedEvent;
use futures::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{Query, path_id};
use crate::problem::{Problem, ProblemDocument};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// Events read from the log per page.
const PAGE: usize = 1024;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// `ndjson` (the default: the exact recorded envelopes) or `csv`.
    #[param(pattern = "^(ndjson|csv)$")]
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

/// Streams every event of the organization recorded so far, in position order.
#[utoipa::path(get, path = "/v1/audit/{orgId}/export", tag = "audit", params(("orgId" = uuid::Uuid, Path), ExportQuery),
    responses((status = 200, description = "application/x-ndjson (one stored envelope per line) or text/csv"),
        (status = "4XX", body = ProblemDocument, content_type = "application/problem+json")))]
async fn export(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, Problem> {
    let org: OrgId = path_id("orgId", &org)?;
    let format = match query.format.as_deref().unwrap_or("ndjson") {
        "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        _ => return Err(Problem::bad_request("invalid_query", "`format` is ndjson or csv").with_field("format")),
    };
    caller.require_human()?;
    caller.require_admin(&app, org)?;
    if format == Format::Ndjson {
        return verifiable_export(&app, org).await;
    }
    // The export ends at the head as it is now, so it is one consistent prefix of the log.
    let head = app.store.head().await?;
    let store = app.store.clone();
    let header_line = (format == Format::Csv).then(|| {
        Ok::<_, std::io::Error>(Bytes::from_static(
            b"position,orgSequence,recordedAt,type,stream,actorKind,actorId,ip,userAgent,leafHash\n",
        ))
    });
    let pages = futures::stream::unfold(1u64, move |next| {
        let store = store.clone();
        async move {
            if next > head {
                return None;
            }
            match store.read_all(next, PAGE).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let after = events.last().map_or(head + 1, |event| event.position + 1);
                    let mut chunk = Vec::new();
                    for event in events.iter().filter(|event| event.position <= head && event.org_id == Some(org)) {
                        write_event(&mut chunk, event, format);
                    }
                    Some((Ok(Bytes::from(chunk)), after))
                }
                Err(error) => {
                    tracing::error!(%error, "reading the log for an export failed");
                    Some((Err(std::io::Error::other("the log could not be read")), head + 1))
                }
            }
        }
    });
    let body = futures::stream::iter(header_line).chain(pages);
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .map_err(|error| Problem::internal("building the export response", &error))
}

/// The organization's events up to the latest checkpoint, each with its inclusion proof.
async fn verifiable_export(app: &AppState, org: OrgId) -> Result<Response, Problem> {
    let checkpoint = super::ledger::export_checkpoint(app, None).await?;
    let org_text = org.to_string();
    let header = super::ledger::export_header("organization", Some(&org_text), &checkpoint);
    let tree_size = checkpoint.tree_size;
    let store = app.store.clone();
    let ledger = app.ledger.clone();
    let state = (1u64, crate::ledger::LeafCache::default());
    let pages = futures::stream::unfold(state, move |(next, mut cache)| {
        let store = store.clone();
        let ledger = ledger.clone();
        let org_text = org_text.clone();
        async move {
            if next > tree_size {
                return None;
            }
            let want = PAGE.min((tree_size - next + 1) as usize);
            let rows = match store.read_raw(next, want).await {
                Ok(rows) if rows.is_empty() => return None,
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "reading the log for an export failed");
                    let failed = Err(std::io::Error::other("the log could not be read"));
                    return Some((failed, (tree_size + 1, cache)));
                }
            };
            let after = rows.last().map_or(tree_size + 1, |row| row.position + 1);
            let mut chunk = Vec::new();
            for row in rows.iter().filter(|row| row.position <= tree_size && row.org_id.as_deref() == Some(&org_text)) {
                match ledger.inclusion_proof(row.position - 1, tree_size, &mut cache).await {
                    Ok(proof) => super::ledger::write_entry(&mut chunk, row, Some(&proof)),
                    Err(problem) => {
                        tracing::error!(detail = %problem.detail, "building an inclusion proof for an export failed");
                        let failed = Err(std::io::Error::other("an inclusion proof could not be built"));
                        return Some((failed, (tree_size + 1, cache)));
                    }
                }
            }
            Some((Ok(Bytes::from(chunk)), (after, cache)))
        }
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(header)) }).chain(pages);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|error| Problem::internal("building the export response", &error))
}

fn write_event(out: &mut Vec<u8>, event: &RecordedEvent, format: Format) {
    match format {
        Format::Ndjson => {
            out.extend_from_slice(&event.envelope);
            out.push(b'\n');
        }
        Format::Csv => {
            let request = event.request.as_ref();
            let fields = [
                event.position.to_string(),
                event.org_sequence.map(|sequence| sequence.to_string()).unwrap_or_default(),
                credledger_domain::time_format::format(&event.recorded_at).unwrap_or_default(),
                event.event_type.clone(),
                event.stream.clone(),
                event.actor.kind.as_str().to_owned(),
                event.actor.id.clone(),
                request.and_then(|r| r.ip.clone()).unwrap_or_default(),
                request.and_then(|r| r.user_agent.clone()).unwrap_or_default(),
                hex::encode(event.leaf_hash),
            ];
            let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
            out.extend_from_slice(line.join(",").as_bytes());
            out.push(b'\n');
        }
    }
}

/// Quotes a field when it holds a comma, a quote or a line break; a leading `=`, `+`, `-` or
/// `@` is prefixed with `'` so a spreadsheet never runs a client-chosen user agent as a formula.
fn csv_field(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@']) { format!("'{field}") } else { field.to_owned() };
    if field.contains([',', '"', '\n', '\r']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("curl/8"), "curl/8");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
