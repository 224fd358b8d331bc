//! Policy history (SOC 2 CC8.1): the filter posts the reviewable policy document of every
//! configuration it loads; the collector keeps each distinct version per tenant ([`store`]) and
//! serves it to auditors.
//!
//! - `POST /v1/policies` (ingest token): `{"records": [{"hash": "sha256:...", "policy": {...}}]}`;
//!   the document is stored for each tenant in its `tenants` list. 200 `{"accepted", "duplicates"}`;
//!   400 when the body is not of that shape or a hash does not match its document.
//! - `GET /{tenant}/api/v1/policies`: `{"policies": [{version, hash, receivedAt, changes}]}`,
//!   newest first (`changes`: paths changed from the version before).
//! - `GET /{tenant}/api/v1/policies/{version}`: `{version, hash, receivedAt, policy}`.
//! - `GET /{tenant}/api/v1/policies/{version}/diff?against={other}`: `{"from", "to",
//!   "changes": [{path, before, after}]}` from `other` (default: the version before) to `version`.
//! - `GET /{tenant}/api/v1/policies/export?format=json|csv`: the whole history, oldest first;
//!   JSON with each document and its changes, CSV one row per changed path.

pub mod diff;
pub mod store;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::export::tenant_connection;
use crate::ingest::IngestAuthorized;
use crate::ledger::signing::SigningKey;
use crate::server::AppState;
use crate::store::Conn;
use diff::{diff, Change};
use store::PolicyVersion;

/// What signs new policy versions.
pub struct Signer {
    pub key: SigningKey,
    pub log_name: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(acp_record::POLICY_PATH, post(receive))
        .route("/{tenant}/api/v1/policies", get(list))
        .route("/{tenant}/api/v1/policies/export", get(export))
        .route("/{tenant}/api/v1/policies/{version}", get(show))
        .route("/{tenant}/api/v1/policies/{version}/diff", get(show_diff))
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    records: Vec<Posted>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    hash: String,
    policy: Value,
}

/// The tenants a document applies to, once its hash is checked.
fn check(posted: &Posted) -> Result<Vec<String>, String> {
    if store::document_hash(&posted.policy) != posted.hash {
        return Err(format!(
            "hash {} does not match the policy document",
            posted.hash
        ));
    }
    let tenants = posted
        .policy
        .get("tenants")
        .and_then(Value::as_array)
        .ok_or("policy.tenants: missing list")?;
    tenants
        .iter()
        .map(|t| {
            t.as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| "policy.tenants: not a list of tenant names".to_owned())
        })
        .collect()
}

async fn receive(
    _: IngestAuthorized,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body is not {{\"records\": [{{\"hash\", \"policy\"}}]}}: {e}"
        ))
    })?;
    let checked = batch
        .records
        .iter()
        .map(|p| check(p).map(|tenants| (tenants, &p.policy)))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| {
            tracing::warn!(error = %e, "policy document refused");
            ApiError::bad_request(e)
        })?;
    let items: Vec<(Vec<String>, Value)> =
        checked.into_iter().map(|(t, p)| (t, p.clone())).collect();
    let (db, signer) = (state.db.clone(), state.signer.clone());
    let (accepted, duplicates) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, usize)> {
            let conn = db.write()?;
            let now = chrono::Utc::now().timestamp_millis();
            let (mut accepted, mut duplicates) = (0, 0);
            for (tenants, policy) in &items {
                let new =
                    store::insert(&*conn, &signer.key, &signer.log_name, tenants, policy, now)?;
                for v in &new {
                    tracing::info!(
                        tenant = v.tenant,
                        version = v.version,
                        hash = v.hash,
                        "new policy version"
                    );
                }
                accepted += new.len();
                duplicates += tenants.len() - new.len();
            }
            Ok((accepted, duplicates))
        })
        .await??;
    Ok(Json(json!({"accepted": accepted, "duplicates": duplicates})).into_response())
}

/// Each version of `tenant`, oldest first, with its changes from the version before.
pub fn history(
    conn: &dyn Conn,
    tenant: &str,
) -> anyhow::Result<Vec<(PolicyVersion, Value, Vec<Change>)>> {
    let mut previous = Value::Null;
    let mut out = Vec::new();
    for version in store::after(conn, tenant, 0)? {
        let document = version.document_value()?;
        let changes = if previous.is_null() {
            Vec::new()
        } else {
            diff(&previous, &document)
        };
        previous = document.clone();
        out.push((version, document, changes));
    }
    Ok(out)
}

fn summary(v: &PolicyVersion) -> Value {
    json!({"version": v.version, "hash": v.hash, "receivedAt": rfc3339(v.received_ms)})
}

async fn list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let conn = tenant_connection(&state, &tenant, &headers).await?;
    let history = tokio::task::spawn_blocking(move || history(&*conn, &tenant)).await??;
    let policies: Vec<Value> = history
        .iter()
        .rev()
        .map(|(v, _, changes)| {
            let mut s = summary(v);
            s["changes"] = changes.iter().map(|c| c.path.clone()).collect();
            s
        })
        .collect();
    Ok(Json(json!({ "policies": policies })).into_response())
}

fn parse_version(text: &str) -> Result<u64, ApiError> {
    text.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::bad_request(format!("version {text:?}: expected an integer from 1"))
    })
}

async fn load(
    state: &AppState,
    tenant: String,
    headers: &HeaderMap,
    versions: Vec<u64>,
) -> Result<Vec<PolicyVersion>, ApiError> {
    let conn = tenant_connection(state, &tenant, headers).await?;
    tokio::task::spawn_blocking(move || {
        versions
            .into_iter()
            .map(|n| {
                store::get(&*conn, &tenant, n)?.ok_or_else(|| {
                    ApiError::new(StatusCode::NOT_FOUND, format!("no policy version {n}"))
                })
            })
            .collect()
    })
    .await?
}

async fn show(
    State(state): State<AppState>,
    Path((tenant, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    let found = load(&state, tenant, &headers, vec![version]).await?;
    let v = &found[0];
    let mut body = summary(v);
    body["policy"] = v.document_value()?;
    Ok(Json(body).into_response())
}

/// The value of the only query parameter `name` allows (400 for any other).
fn only_param(uri: &Uri, name: &str) -> Result<Option<String>, ApiError> {
    let mut value = None;
    for (key, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if key != name || value.is_some() {
            return Err(ApiError::bad_request(format!(
                "invalid parameter `{key}`: expected `{name}` once"
            )));
        }
        value = Some(v.into_owned());
    }
    Ok(value)
}

async fn show_diff(
    State(state): State<AppState>,
    Path((tenant, version)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let to = parse_version(&version)?;
    let from = match only_param(&uri, "against")?.as_deref() {
        Some(other) => parse_version(other)?,
        None if to > 1 => to - 1,
        None => {
            return Err(ApiError::bad_request(
                "version 1 has no version before it: give `against`",
            ))
        }
    };
    let found = load(&state, tenant, &headers, vec![from, to]).await?;
    let changes = diff(&found[0].document_value()?, &found[1].document_value()?);
    Ok(Json(json!({"from": from, "to": to, "changes": changes})).into_response())
}

/// The history as CSV: one row per changed path (`version 1` lists no change).
pub fn history_csv(history: &[(PolicyVersion, Value, Vec<Change>)]) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["version", "hash", "receivedAt", "path", "before", "after"])?;
    for (v, _, changes) in history {
        let (version, at) = (v.version.to_string(), rfc3339(v.received_ms));
        if changes.is_empty() {
            out.write_record([version.as_str(), &v.hash, &at, "", "", ""])?;
        }
        for c in changes {
            out.write_record([
                version.as_str(),
                &v.hash,
                &at,
                &c.path,
                &c.before.to_string(),
                &c.after.to_string(),
            ])?;
        }
    }
    Ok(out.into_inner()?)
}

/// The history as JSON: each version with its document and changes.
pub fn history_json(history: &[(PolicyVersion, Value, Vec<Change>)]) -> Value {
    let versions: Vec<Value> = history
        .iter()
        .map(|(v, document, changes)| {
            let mut s = summary(v);
            s["policy"] = document.clone();
            s["changes"] = json!(changes);
            s
        })
        .collect();
    json!({ "policies": versions })
}

async fn export(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let csv = match only_param(&uri, "format")?.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid parameter `format`: {other:?}; expected json or csv"
            )))
        }
    };
    let conn = tenant_connection(&state, &tenant, &headers).await?;
    let history = tokio::task::spawn_blocking(move || history(&*conn, &tenant)).await??;
    Ok(if csv {
        ([(header::CONTENT_TYPE, "text/csv")], history_csv(&history)?).into_response()
    } else {
        Json(history_json(&history)).into_response()
    })
}

/// Shared by the server: the signer of policy versions.
pub fn signer(key: SigningKey, log_name: &str) -> Arc<Signer> {
    Arc::new(Signer {
        key,
        log_name: log_name.to_owned(),
    })
}
