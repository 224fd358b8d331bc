//! The HTTP service: the router, the shared state ([`state`]), the error answer ([`error`]),
//! the bearer-token extractors ([`auth`]) and one module per resource; `/metrics` ([`metrics`])
//! and `/readyz` ([`health`]) answer without credentials, like `/healthz`.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod evidence;
pub mod export;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod policies;
pub mod proofs;
pub mod security_headers;
pub mod state;
pub mod stats;
pub mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;

use state::AppState;

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            acp_record::INGEST_PATH,
            post(ingest::ingest)
                .layer(DefaultBodyLimit::max(max_body_bytes))
                .layer(from_fn_with_state(state.clone(), metrics::count_ingest)),
        )
        .route(
            "/{tenant}/api/v1/audit",
            get(export::export).layer(from_fn_with_state(state.clone(), metrics::count_export)),
        )
        .route(
            "/{tenant}/api/v1/checkpoints/latest",
            get(proofs::latest_checkpoint),
        )
        .route(
            "/{tenant}/api/v1/checkpoints/consistency",
            get(proofs::consistency),
        )
        .route("/v1/signing-keys", get(proofs::signing_keys))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/{tenant}/api/v1/stats", get(stats::stats))
        .merge(dashboard::routes())
        .merge(policies::routes())
        .merge(evidence::routes())
        .merge(webhooks::routes())
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers::add))
}
