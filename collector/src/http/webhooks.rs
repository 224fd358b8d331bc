//! `/{tenant}/api/v1/webhooks...` ([`crate::webhooks`]): create, list, show, delete, enable and replay a tenant's
//! endpoints. Authorized like the export API (a key of `{tenant}`); another tenant's endpoint
//! is 404, as if it did not exist.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::TenantKey;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::{Access, Conn};
use crate::webhooks::db::{self, View, Webhook};
use crate::webhooks::spec::RawSpec;
use crate::webhooks::WebhookError;

/// Largest create or replay body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/api/v1/webhooks", post(create).get(list))
        .route("/{tenant}/api/v1/webhooks/{id}", get(show).delete(remove))
        .route("/{tenant}/api/v1/webhooks/{id}/enable", post(enable))
        .route("/{tenant}/api/v1/webhooks/{id}/replay", post(replay))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Runs `work` on a read-write connection (the handlers' [`TenantKey`] has checked the key
/// against the tenant before the body is even parsed).
async fn with_tenant<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&dyn Conn) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    state.db.blocking(Access::Write, work).await
}

fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))
}

fn owned(conn: &dyn Conn, tenant: &str, id: &str) -> Result<Webhook, WebhookError> {
    db::get(conn, tenant, id)?.ok_or_else(|| WebhookError::NotFound(id.to_owned()))
}

async fn create(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    _: TenantKey,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let allow = state.webhooks.allow.clone();
    let owner = tenant.clone();
    let (view, secret) = with_tenant(&state, move |conn| {
        let raw: RawSpec = parse_body(body)?;
        let spec = raw.validate(&allow).map_err(WebhookError::Invalid)?;
        allow
            .check_url_resolved(&spec.url)
            .map_err(WebhookError::Invalid)?;
        let hook = db::create(conn, &owner, &spec).map_err(WebhookError::Conflict)?;
        Ok((db::view(conn, &hook)?, hook.secret))
    })
    .await?;
    let mut body = serde_json::to_value(view)?;
    body["secret"] = secret.into();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    _: TenantKey,
) -> Result<Json<serde_json::Value>, ApiError> {
    let owner = tenant.clone();
    let views = with_tenant(&state, move |conn| {
        db::list(conn, Some(&owner))?
            .iter()
            .map(|hook| Ok(db::view(conn, hook)?))
            .collect::<Result<Vec<View>, ApiError>>()
    })
    .await?;
    Ok(Json(json!({ "webhooks": views })))
}

async fn show(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    _: TenantKey,
) -> Result<Json<View>, ApiError> {
    let owner = tenant.clone();
    with_tenant(&state, move |conn| {
        Ok(db::view(conn, &owned(conn, &owner, &id)?)?)
    })
    .await
    .map(Json)
}

async fn remove(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    _: TenantKey,
) -> Result<StatusCode, ApiError> {
    let owner = tenant.clone();
    with_tenant(&state, move |conn| {
        owned(conn, &owner, &id)?;
        db::delete(conn, &id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn enable(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    _: TenantKey,
) -> Result<Json<View>, ApiError> {
    let owner = tenant.clone();
    with_tenant(&state, move |conn| {
        owned(conn, &owner, &id)?;
        db::enable(conn, &id)?;
        Ok(db::view(conn, &owned(conn, &owner, &id)?)?)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReplayRequest {
    from_seq: u64,
}

async fn replay(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    _: TenantKey,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<View>, ApiError> {
    let owner = tenant.clone();
    with_tenant(&state, move |conn| {
        let request: ReplayRequest = parse_body(body)?;
        owned(conn, &owner, &id)?;
        db::replay(conn, &id, request.from_seq)?;
        Ok(db::view(conn, &owned(conn, &owner, &id)?)?)
    })
    .await
    .map(Json)
}
