//! Policy history (SOC 2 CC8.1): the filter posts the reviewable policy document of every
//! configuration it loads; the collector keeps each distinct version per tenant ([`store`]) and
//! serves it to auditors.
//!
//! The endpoints are in [`crate::http::policies`]:
//!
//! - `POST /v1/policies` (ingest token): `{"records": [{"hash": "sha256:...", "policy": {...}}]}`;
//!   the document is stored for each tenant in its `tenants` list. 200 `{"accepted", "duplicates"}`;
//!   400 when the body is not of that shape or a hash does not match its document.
//! - `GET /{tenant}/api/v1/policies`: `{"policies": [{version, hash, receivedAt, changes}]}`,
//!   newest first (`changes`: paths changed from the version before).
//! - `GET /{tenant}/api/v1/policies/{version}`: `{version, hash, receivedAt, policy}`.
//! - `GET /{tenant}/api/v1/policies/{version}/diff?against={other}`: `{"from", "to",
//!   "changes": [{path, before, after}]}` from `other` (default: the version before) to `version`.
//! - `GET /{tenant}/api/v1/policies/export?format=json|csv`: the whole history, oldest first;
//!   JSON with each document and its changes, CSV one row per changed path.

pub mod diff;
pub mod store;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ledger::signing::SigningKey;
use crate::store::Conn;
use diff::{diff, Change};
use store::PolicyVersion;

/// What signs new policy versions.
pub struct Signer {
    pub key: SigningKey,
    pub log_name: String,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub records: Vec<Posted>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posted {
    pub hash: String,
    pub policy: Value,
}

/// The tenants a document applies to, once its hash is checked.
pub fn check(posted: &Posted) -> Result<Vec<String>, String> {
    if store::document_hash(&posted.policy) != posted.hash {
        return Err(format!(
            "hash {} does not match the policy document",
            posted.hash
        ));
    }
    let tenants = posted
        .policy
        .get("tenants")
        .and_then(Value::as_array)
        .ok_or("policy.tenants: missing list")?;
    tenants
        .iter()
        .map(|t| {
            t.as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| "policy.tenants: not a list of tenant names".to_owned())
        })
        .collect()
}

/// Why a policy request is refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The posted body is not a batch of documents.
    #[error("body is not {{\"records\": [{{\"hash\", \"policy\"}}]}}: {0}")]
    Body(String),
    /// A document's hash or tenants.
    #[error("{0}")]
    Invalid(String),
    #[error("no policy version {0}")]
    NoVersion(u64),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// The documents of a posted batch, each with the tenants it applies to, once every hash is
/// checked.
pub fn parse_batch(body: &[u8]) -> Result<Vec<(Vec<String>, Value)>, PolicyError> {
    let batch: Batch =
        serde_json::from_slice(body).map_err(|e| PolicyError::Body(e.to_string()))?;
    let checked = batch
        .records
        .iter()
        .map(|p| check(p).map(|tenants| (tenants, &p.policy)))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| {
            tracing::warn!(error = %e, "policy document refused");
            PolicyError::Invalid(e)
        })?;
    Ok(checked.into_iter().map(|(t, p)| (t, p.clone())).collect())
}

/// The given versions of `tenant`, in order.
pub fn versions(
    conn: &dyn Conn,
    tenant: &str,
    versions: Vec<u64>,
) -> Result<Vec<PolicyVersion>, PolicyError> {
    versions
        .into_iter()
        .map(|n| store::get(conn, tenant, n)?.ok_or(PolicyError::NoVersion(n)))
        .collect()
}

/// Stores each checked document (with the tenants it applies to) as a new version of each of
/// its tenants that does not have it yet; returns the numbers of new versions and duplicates.
pub fn store_batch(
    conn: &dyn Conn,
    signer: &Signer,
    items: &[(Vec<String>, Value)],
    now: i64,
) -> anyhow::Result<(usize, usize)> {
    let (mut accepted, mut duplicates) = (0, 0);
    for (tenants, policy) in items {
        let new = store::insert(conn, &signer.key, &signer.log_name, tenants, policy, now)?;
        for v in &new {
            tracing::info!(
                tenant = v.tenant,
                version = v.version,
                hash = v.hash,
                "new policy version"
            );
        }
        accepted += new.len();
        duplicates += tenants.len() - new.len();
    }
    Ok((accepted, duplicates))
}

/// Each version of `tenant`, oldest first, with its changes from the version before.
pub fn history(
    conn: &dyn Conn,
    tenant: &str,
) -> anyhow::Result<Vec<(PolicyVersion, Value, Vec<Change>)>> {
    let mut previous = Value::Null;
    let mut out = Vec::new();
    for version in store::after(conn, tenant, 0)? {
        let document = version.document_value()?;
        let changes = if previous.is_null() {
            Vec::new()
        } else {
            diff(&previous, &document)
        };
        previous = document.clone();
        out.push((version, document, changes));
    }
    Ok(out)
}

pub fn summary(v: &PolicyVersion) -> Value {
    json!({"version": v.version, "hash": v.hash, "receivedAt": rfc3339(v.received_ms)})
}

/// The history as CSV: one row per changed path (`version 1` lists no change).
pub fn history_csv(history: &[(PolicyVersion, Value, Vec<Change>)]) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["version", "hash", "receivedAt", "path", "before", "after"])?;
    for (v, _, changes) in history {
        let (version, at) = (v.version.to_string(), rfc3339(v.received_ms));
        if changes.is_empty() {
            out.write_record([version.as_str(), &v.hash, &at, "", "", ""])?;
        }
        for c in changes {
            out.write_record([
                version.as_str(),
                &v.hash,
                &at,
                &c.path,
                &c.before.to_string(),
                &c.after.to_string(),
            ])?;
        }
    }
    Ok(out.into_inner()?)
}

/// The history as JSON: each version with its document and changes.
pub fn history_json(history: &[(PolicyVersion, Value, Vec<Change>)]) -> Value {
    let versions: Vec<Value> = history
        .iter()
        .map(|(v, document, changes)| {
            let mut s = summary(v);
            s["policy"] = document.clone();
            s["changes"] = json!(changes);
            s
        })
        .collect();
    json!({ "policies": versions })
}

/// Shared by the server: the signer of policy versions.
pub fn signer(key: SigningKey, log_name: &str) -> Arc<Signer> {
    Arc::new(Signer {
        key,
        log_name: log_name.to_owned(),
    })
}
