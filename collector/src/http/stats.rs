//! `GET /{tenant}/api/v1/stats` ([`crate::export::stats`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;

use crate::export::stats::{compute, Stats, StatsError, StatsQuery};
use crate::http::error::ApiError;
use crate::http::export::tenant_connection;
use crate::http::state::AppState;

pub async fn stats(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Stats>, ApiError> {
    let query = StatsQuery::parse(uri.query());
    let conn = tenant_connection(&state, &tenant, &headers).await?;
    let mut query = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    query.filter.tenant = tenant;
    let stats = tokio::task::spawn_blocking(move || compute(&*conn, &query))
        .await?
        .map_err(|e| match e {
            StatsError::Param(e) => ApiError::bad_request(e.to_string()),
            StatsError::Store(e) => ApiError::from(e),
        })?;
    Ok(Json(stats))
}
