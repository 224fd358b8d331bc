//! The checkpoint endpoints ([`crate::ledger::proofs`] has the format of proofs):
//! consistency proof between two tree sizes, and the published verifier keys.
//!
//! - `GET /{tenant}/api/v1/checkpoints/latest`: `{"treeSize", "rootHash", "note"}` (404 before
//!   the first checkpoint).
//! - `GET /{tenant}/api/v1/checkpoints/consistency?from=M&to=N`: `{"from", "to", "proof"}`,
//!   the RFC 6962 consistency proof between the trees of M and N records
//!   (`1 <= M <= N <= latest checkpoint`; `to` defaults to the latest checkpoint).
//! - `GET /v1/signing-keys`: every verifier key that has signed, one per line (no API key).
//!
//! With `proof=true`, a JSON export page adds `"checkpoint"` (the latest signed checkpoint note)
//! and `"proofs"`, one `{"seq", "treeSize", "auditPath"}` per record in order; an NDJSON export
//! starts with a `{"checkpoint": ...}` line and wraps each record as
//! `{"seq", "treeSize", "auditPath", "record"}`. `record` is the stored JSON, byte for byte, so
//! its leaf hash is SHA-256(0x00 || those bytes). A record newer than the checkpoint has
//! `"auditPath": null` until the next checkpoint.

use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tlog_tiles::tlog::Hash;

use crate::http::auth::TenantKey;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::ledger::{checkpoints, proofs};
use crate::store::Access;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LatestCheckpoint {
    tree_size: u64,
    root_hash: String,
    note: String,
}

pub async fn latest_checkpoint(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    _: TenantKey,
) -> Result<Response, ApiError> {
    let latest = state
        .db
        .blocking(Access::Read, move |conn| -> Result<_, ApiError> {
            Ok(proofs::latest_checkpoint(conn, &tenant)?)
        })
        .await?;
    let root = latest.note.lines().nth(2).unwrap_or_default().to_owned();
    Ok(Json(LatestCheckpoint {
        tree_size: latest.tree_size,
        root_hash: root,
        note: latest.note,
    })
    .into_response())
}

#[derive(Serialize)]
struct Consistency {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

pub async fn consistency(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    _: TenantKey,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (from, to) = consistency_params(uri.query())?;
    let (to, proof) = state
        .db
        .blocking(Access::Read, move |conn| -> Result<_, ApiError> {
            Ok(proofs::consistency_proof(conn, &tenant, from, to)?)
        })
        .await?;
    let proof = Consistency {
        from,
        to,
        proof: proof.iter().map(Hash::to_string).collect(),
    };
    Ok(Json(proof).into_response())
}

/// `from` (required) and `to` (optional) of a consistency request.
fn consistency_params(query: Option<&str>) -> Result<(u64, Option<u64>), ApiError> {
    let mut from = None;
    let mut to = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let number = value.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid parameter `{name}`: expected a tree size"))
        })?;
        match name.as_ref() {
            "from" => from = Some(number),
            "to" => to = Some(number),
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid parameter `{other}`: unknown; expected from, to"
                )))
            }
        }
    }
    let from = from.ok_or_else(|| ApiError::bad_request("missing parameter `from`"))?;
    Ok((from, to))
}

pub async fn signing_keys(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state
        .db
        .blocking(Access::Read, |conn| -> Result<_, ApiError> {
            Ok(checkpoints::keys(conn)?)
        })
        .await?;
    let body: String = keys.iter().map(|k| format!("{k}\n")).collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}
