//! `GET /metrics`: the collector's metrics in the OpenMetrics text format ([`crate::metrics`]),
//! for Prometheus; and the layers that count and time the answers of ingest and export.
//!
//! The gauges from the store (per-tenant tree sizes and checkpoint ages, webhook lag, failures
//! and disabled endpoints) are read at each scrape with a few index lookups per tenant and
//! endpoint, on a blocking thread. When the store cannot be read, the answer still carries the
//! service's own counters, and `acp_collector_store_up` is 0.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::export::formats::Format;
use crate::http::state::AppState;
use crate::ledger::checkpoints;
use crate::ledger::writer::QUEUE_DEPTH;
use crate::metrics::{Snapshot, CONTENT_TYPE};
use crate::store::{Access, StoreError};
use crate::webhooks;

pub async fn metrics(State(state): State<AppState>) -> Response {
    let gauges = state
        .db
        .blocking(Access::Read, |conn| -> Result<_, StoreError> {
            Ok((checkpoints::tree_gauges(conn)?, webhooks::db::gauges(conn)?))
        })
        .await;
    let (store_up, (trees, webhooks)) = match gauges {
        Ok(gauges) => (true, gauges),
        Err(err) => {
            tracing::warn!(error = %err, "metrics: cannot read the store");
            (false, Default::default())
        }
    };
    let snapshot = Snapshot {
        now_ms: chrono::Utc::now().timestamp_millis(),
        store_up,
        writer_up: state.writer.is_alive(),
        queue_depth: state.writer.queue_depth(),
        queue_capacity: QUEUE_DEPTH,
        checkpoint_interval_seconds: state.checkpoint_interval.as_secs_f64(),
        trees,
        webhooks,
    };
    let text = state.metrics.encode(&snapshot);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Counts each answer of `POST /v1/records` by status code and times it (the token check, the
/// body limit and the commit included).
pub async fn count_ingest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .ingest_answered(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Counts each answer of the export API by the format asked for and status code.
pub async fn count_export(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let format = export_format(request.uri().query());
    let response = next.run(request).await;
    state
        .metrics
        .export_answered(format, response.status().as_u16());
    response
}

/// The `format` label of an export request: its `format` parameter (`json` when absent), or
/// `invalid` when that names no format.
fn export_format(query: Option<&str>) -> &'static str {
    let asked = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "format")
        .last()
        .map(|(_, value)| Format::parse(&value));
    match asked {
        None | Some(Some(Format::Json)) => "json",
        Some(Some(Format::Ndjson)) => "ndjson",
        Some(Some(Format::Csv)) => "csv",
        Some(None) => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_requests_are_labelled_with_a_fixed_format() {
        for (query, format) in [
            (None, "json"),
            (Some("limit=5"), "json"),
            (Some("format=csv"), "csv"),
            (Some("format=ndjson&limit=2"), "ndjson"),
            (Some("format=xml"), "invalid"),
            (Some("format=%63sv"), "csv"),
        ] {
            assert_eq!(export_format(query), format, "{query:?}");
        }
    }
}
