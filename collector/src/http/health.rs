//! `GET /readyz`: whether this collector can take audit records now. `200 ok` when the store
//! answers a trivial query, the writer thread takes batches and the signing key is loaded;
//! otherwise 503 with `{"ready": false, "checks": {"store": ..., "writer": ..., "signing_key":
//! ...}}`, each check `"ok"` or what failed. `/healthz` (the process answers) is apart.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::http::state::AppState;
use crate::store::{Access, ConnExt, StoreError};

/// How long the store may take to answer before it counts as unreachable.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn readyz(State(state): State<AppState>) -> Response {
    let query = state
        .db
        .blocking(Access::Read, |conn| -> Result<(), StoreError> {
            conn.query_opt("SELECT 1", &[], |_| Ok(()))?;
            Ok(())
        });
    let store = match tokio::time::timeout(STORE_TIMEOUT, query).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("{:#}", anyhow::Error::from(err))),
        Err(_) => Err(format!("no answer within {STORE_TIMEOUT:?}")),
    };
    let writer = state.writer.is_alive();
    match failures(store, writer, !state.signing_key.is_empty()) {
        None => "ok".into_response(),
        Some(checks) => {
            tracing::warn!(%checks, "not ready");
            let body = json!({ "ready": false, "checks": checks });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Every check's result when one has failed; `None` when all passed.
fn failures(store: Result<(), String>, writer: bool, signing_key: bool) -> Option<Value> {
    let ready = store.is_ok() && writer && signing_key;
    let ok_or = |ok: bool, failed: &str| json!(if ok { "ok" } else { failed });
    (!ready).then(|| {
        json!({
            "store": store.err().map_or(json!("ok"), Value::from),
            "writer": ok_or(writer, "the writer thread has stopped"),
            "signing_key": ok_or(signing_key, "no signing key is loaded"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failed_check_is_named() {
        assert_eq!(failures(Ok(()), true, true), None);
        assert_eq!(
            failures(Err("cannot open".into()), true, true),
            Some(json!({"store": "cannot open", "writer": "ok", "signing_key": "ok"}))
        );
        assert_eq!(
            failures(Ok(()), false, true),
            Some(json!({
                "store": "ok",
                "writer": "the writer thread has stopped",
                "signing_key": "ok"
            }))
        );
        assert_eq!(
            failures(Ok(()), true, false).unwrap()["signing_key"],
            "no signing key is loaded"
        );
    }
}
