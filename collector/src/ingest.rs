//! `POST /v1/records`: the filter posts an [`IngestBatch`] with `Authorization: Bearer <ingest
//! token>` (401 otherwise, checked before the body is read).
//!
//! Partial validity: each record is parsed as an [`AuditRecord`] and validated on its own. The
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
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use acp_record::{AuditRecord, IngestBatch};

use crate::auth::bearer;
use crate::error::ApiError;
use crate::server::AppState;
use crate::store::records::NewRecord;

/// Proof that the request carries the ingest token.
pub struct IngestAuthorized;

impl FromRequestParts<AppState> for IngestAuthorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if state.ingest_token.verify(token) => Ok(IngestAuthorized),
            _ => {
                tracing::warn!("ingest refused: missing or wrong ingest token");
                Err(ApiError::unauthorized())
            }
        }
    }
}

/// A record of the batch that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub id: Option<String>,
    pub error: String,
}

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
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
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

/// Splits a batch into storable records and rejections (by index in the batch).
pub fn check_batch(records: Vec<Value>) -> (Vec<NewRecord>, Vec<Rejected>) {
    let mut valid = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for (index, value) in records.into_iter().enumerate() {
        match check_record(&value) {
            Ok(record) => valid.push(record),
            Err(error) => rejected.push(Rejected {
                index,
                id: value.get("id").and_then(Value::as_str).map(str::to_owned),
                error,
            }),
        }
    }
    (valid, rejected)
}

/// Parses and validates one record; the error starts with the offending field's path when
/// there is one (`contentScan.riskScore: invalid type ...`).
fn check_record(value: &Value) -> Result<NewRecord, String> {
    let record: AuditRecord = serde_path_to_error::deserialize(value).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            path => format!("{path}: {}", e.inner()),
        }
    })?;
    record.validate()?;
    let ts = record
        .timestamp_millis()
        .ok_or_else(|| format!("timestamp: {:?} is out of range", record.timestamp))?;
    NewRecord::new(record, ts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::tests::sample;
    use serde_json::json;

    #[test]
    fn valid_records_pass_and_invalid_ones_are_named() {
        let mut bad_result = sample("r1", "2026-03-15T14:23:07.142Z");
        bad_result["result"] = json!("denied");
        let mut bad_type = sample("r3", "2026-03-15T14:23:07.142Z");
        bad_type["latencyMs"] = json!("fast");
        let mut unknown = sample("r4", "2026-03-15T14:23:07.142Z");
        unknown["extra"] = json!(1);
        let records = vec![
            sample("r0", "2026-03-15T14:23:07.142Z"),
            bad_result,
            sample("r2", "2026-03-15T14:23:08.000Z"),
            bad_type,
            unknown,
            json!("not an object"),
        ];
        let (valid, rejected) = check_batch(records);

        let ids: Vec<&str> = valid.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r0", "r2"]);
        let summary: Vec<(usize, Option<&str>)> = rejected
            .iter()
            .map(|r| (r.index, r.id.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [(1, Some("r1")), (3, Some("r3")), (4, Some("r4")), (5, None)]
        );
        assert!(
            rejected[0].error.starts_with("result: "),
            "{}",
            rejected[0].error
        );
        assert!(
            rejected[1].error.starts_with("latencyMs: "),
            "{}",
            rejected[1].error
        );
        assert!(
            rejected[2].error.contains("unknown field `extra`"),
            "{}",
            rejected[2].error
        );
    }

    #[test]
    fn stored_json_is_the_canonical_record() {
        let (valid, _) = check_batch(vec![sample("r0", "2026-03-15T14:23:07.142Z")]);
        let record = &valid[0];
        let stored: Value = serde_json::from_str(&record.json).unwrap();
        assert_eq!(stored, sample("r0", "2026-03-15T14:23:07.142Z"));
        assert_eq!(record.ts, 1_773_584_587_142);
        assert_eq!(
            (record.result.as_str(), record.event.as_str()),
            ("success", "tool.call")
        );
        assert_eq!(record.tenant, "org_acme_corp");
    }
}
