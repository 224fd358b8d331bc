//! `GET /{tenant}/api/v1/stats` ([`crate::export::stats`]).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;

use crate::export::stats::{compute, Stats, StatsQuery};
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
    let mut query = query?;
    query.filter.tenant = tenant;
    let stats = state
        .db
        .blocking(Access::Read, move |conn| {
            Ok::<_, ApiError>(compute(conn, &query)?)
        })
        .await?;
    Ok(Json(stats))
}
