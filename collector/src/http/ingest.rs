//! `POST /v1/records`: the filter posts an [`IngestBatch`] with `Authorization: Bearer <ingest
//! token>` (401 otherwise, checked before the body is read).
//!
//! Partial validity: each record is parsed as an [`acp_record::AuditRecord`] and validated on its own. The
//! valid records are stored, durably, even when others in the batch are invalid; the answer,
//! sent only after their transaction has committed, is
//! - 200 `{"accepted": N, "duplicates": D}` when every record was valid,
//! - 422 `{"accepted": N, "duplicates": D, "rejected": [{"index": i, "id": "<id or null>",
//!   "error": "<field>: <reason>"}]}` when some were not (the valid ones are stored all the same),
//! - 400 `{"error": "..."}` when the body is not JSON of the batch shape, 413 when it is larger
//!   than the configured limit; nothing is stored then.
//!
//! A record whose id is already stored counts as a duplicate and is not stored again, so the
//! filter can safely retry a batch.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use acp_record::IngestBatch;

use crate::http::auth::IngestAuthorized;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::ledger::ingest::{check_batch, Rejected};
use crate::metrics::RecordOutcome;

#[derive(Debug, Serialize)]
struct IngestResponse {
    accepted: usize,
    duplicates: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected: Vec<Rejected>,
}

pub async fn ingest(
    _: IngestAuthorized,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let batch: IngestBatch = serde_json::from_slice(&body).map_err(|e| {
        tracing::warn!(error = %e, "ingest refused: body is not a batch");
        ApiError::bad_request(format!("body is not a batch {{\"records\": [...]}}: {e}"))
    })?;
    let total = batch.records.len();
    let (valid, rejected) = check_batch(batch.records);
    let stored = if valid.is_empty() {
        Default::default()
    } else {
        state.writer.write(valid).await?
    };
    tracing::debug!(
        records = total,
        accepted = stored.accepted,
        duplicates = stored.duplicates,
        rejected = rejected.len(),
        "ingested batch"
    );
    let metrics = &state.metrics;
    metrics.records_by(RecordOutcome::Accepted, stored.accepted);
    metrics.records_by(RecordOutcome::Duplicate, stored.duplicates);
    metrics.records_by(RecordOutcome::Rejected, rejected.len());
    for r in &rejected {
        tracing::warn!(index = r.index, id = r.id, error = %r.error, "rejected audit record");
    }
    let status = if rejected.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let response = IngestResponse {
        accepted: stored.accepted,
        duplicates: stored.duplicates,
        rejected,
    };
    Ok((status, Json(response)).into_response())
}
