//! The policy history endpoints ([`crate::policies`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::http::auth::{IngestAuthorized, TenantKey};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::policies::diff::{diff, Change};
use crate::policies::store::PolicyVersion;
use crate::policies::{self, history, history_csv, history_json, summary};
use crate::store::Access;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(acp_record::POLICY_PATH, post(receive))
        .route("/{tenant}/api/v1/policies", get(list))
        .route("/{tenant}/api/v1/policies/export", get(export))
        .route("/{tenant}/api/v1/policies/{version}", get(show))
        .route("/{tenant}/api/v1/policies/{version}/diff", get(show_diff))
}

async fn receive(
    _: IngestAuthorized,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let items = policies::parse_batch(&body)?;
    let signer = state.signer.clone();
    let (accepted, duplicates) = state
        .db
        .blocking(Access::Write, move |conn| -> Result<_, ApiError> {
            let now = chrono::Utc::now().timestamp_millis();
            Ok(policies::store_batch(conn, &signer, &items, now)?)
        })
        .await?;
    Ok(Json(json!({"accepted": accepted, "duplicates": duplicates})).into_response())
}

async fn list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    _: TenantKey,
) -> Result<Response, ApiError> {
    let history = tenant_history(&state, tenant).await?;
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

async fn tenant_history(
    state: &AppState,
    tenant: String,
) -> Result<Vec<(PolicyVersion, Value, Vec<Change>)>, ApiError> {
    state
        .db
        .blocking(Access::Read, move |conn| -> Result<_, ApiError> {
            Ok(history(conn, &tenant)?)
        })
        .await
}

async fn load(
    state: &AppState,
    tenant: String,
    versions: Vec<u64>,
) -> Result<Vec<PolicyVersion>, ApiError> {
    state
        .db
        .blocking(Access::Read, move |conn| {
            Ok::<_, ApiError>(policies::versions(conn, &tenant, versions)?)
        })
        .await
}

async fn show(
    State(state): State<AppState>,
    Path((tenant, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    TenantKey::check(&state, tenant.clone(), &headers).await?;
    let found = load(&state, tenant, vec![version]).await?;
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
    headers: HeaderMap,
    uri: Uri,
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
    TenantKey::check(&state, tenant.clone(), &headers).await?;
    let found = load(&state, tenant, vec![from, to]).await?;
    let changes = diff(&found[0].document_value()?, &found[1].document_value()?);
    Ok(Json(json!({"from": from, "to": to, "changes": changes})).into_response())
}

async fn export(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
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
    TenantKey::check(&state, tenant.clone(), &headers).await?;
    let history = tenant_history(&state, tenant).await?;
    Ok(if csv {
        ([(header::CONTENT_TYPE, "text/csv")], history_csv(&history)?).into_response()
    } else {
        Json(history_json(&history)).into_response()
    })
}
