//! `GET /{tenant}/api/v1/evidence?from=&to=[&seed=][&sample=]` (tenant API key; answers the
//! zip of [`crate::evidence`]) and `GET /{tenant}/api/v1/access-review?from=&to=` (the
//! bundle's least-privilege review, [`crate::evidence::access`], as JSON).

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::evidence::{access, build, parse, EvidenceError};
use crate::http::auth::TenantKey;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::Access;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/api/v1/evidence", get(evidence))
        .route("/{tenant}/api/v1/access-review", get(access_review))
}

fn query_params(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn evidence(
    State(state): State<AppState>,
    UrlPath(tenant): UrlPath<String>,
    _: TenantKey,
    uri: Uri,
) -> Result<Response, ApiError> {
    let request = parse(&tenant, &query_params(&uri)).map_err(EvidenceError::Request)?;
    let signer = state.signer.clone();
    let zip = state
        .db
        .blocking(Access::Read, move |conn| {
            let zip = build(conn, &signer.key, &signer.log_name, &request);
            Ok::<_, ApiError>(zip.map_err(EvidenceError::Build)?)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/zip")], zip).into_response())
}

async fn access_review(
    State(state): State<AppState>,
    UrlPath(tenant): UrlPath<String>,
    _: TenantKey,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (from, to) = access::parse_period(&query_params(&uri)).map_err(EvidenceError::Request)?;
    let review = state
        .db
        .blocking(Access::Read, move |conn| {
            Ok::<_, ApiError>(access::load(conn, &tenant, from, to)?)
        })
        .await?;
    Ok(axum::Json(review).into_response())
}
