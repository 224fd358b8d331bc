//! `GET /{tenant}/api/v1/stats` ([`crate::export::stats`]).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;

use crate::export::stats::{compute, Stats, StatsError, StatsQuery};
use crate::http::auth::TenantKey;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::Access;

pub async fn stats(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    _: TenantKey,
    uri: Uri,
) -> Result<Json<Stats>, ApiError> {
    let query = StatsQuery::parse(uri.query());
    let mut query = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    query.filter.tenant = tenant;
    let stats = state
        .db
        .blocking(Access::Read, move |conn| {
            compute(conn, &query).map_err(|e| match e {
                StatsError::Param(e) => ApiError::bad_request(e.to_string()),
                StatsError::Store(e) => ApiError::from(e),
            })
        })
        .await?;
    Ok(Json(stats))
}
