//! What a webhook sends: events read from event sources. Each source is an ordered stream per
//! tenant with its own integer key, and each endpoint keeps one durable cursor per source (the
//! next key it has not delivered), so sources never wait on each other:
//!
//! - `records`: the audit records by their gapless sequence number (`tool.call`,
//!   `tool.denied`, `auth.failed`);
//! - `checkpoints`: the signed checkpoints by tree size (`audit.checkpoint`);
//! - `policies`: the policy versions by version number (`policy.changed`).
//!
//! A new source is one more [`Source`] in [`SOURCES`]: a name, the kinds it yields, a read of
//! the events from a key on, and the table and key column it reads.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::{Conn, ConnExt};

/// An event type a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "tool.call")]
    ToolCall,
    #[serde(rename = "tool.denied")]
    ToolDenied,
    #[serde(rename = "auth.failed")]
    AuthFailed,
    #[serde(rename = "audit.checkpoint")]
    AuditCheckpoint,
    #[serde(rename = "policy.changed")]
    PolicyChanged,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::ToolCall => "tool.call",
            Kind::ToolDenied => "tool.denied",
            Kind::AuthFailed => "auth.failed",
            Kind::AuditCheckpoint => "audit.checkpoint",
            Kind::PolicyChanged => "policy.changed",
        }
    }

    /// The event of a record by its `result`: `success` and `error` are tool calls that ran;
    /// `denied` (scope), `blocked` (content scan) and `rate_limited` are calls ACP stopped;
    /// `auth_failed` (or an `auth.failed` record) is a failed authentication.
    pub fn of_record(event: &str, result: &str) -> Kind {
        match (event, result) {
            ("auth.failed", _) | (_, "auth_failed") => Kind::AuthFailed,
            (_, "success" | "error") => Kind::ToolCall,
            _ => Kind::ToolDenied,
        }
    }
}

/// One event with its stable id (a SIEM de-duplicates by it) and its key in its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub key: u64,
    pub id: String,
    pub kind: Kind,
    pub time_ms: i64,
    /// The audit record's sequence number, for record events.
    pub seq: Option<u64>,
    pub data: Value,
}

/// An ordered per-tenant stream of events: the rows of `table` by their integer `key` column.
pub struct Source {
    pub name: &'static str,
    pub kinds: &'static [Kind],
    /// Up to `limit` events of `tenant` with keys from `from` on, in key order.
    pub read: fn(&dyn Conn, &str, u64, usize) -> anyhow::Result<Vec<Event>>,
    table: &'static str,
    key: &'static str,
}

impl Source {
    /// The key after the last event of `tenant` (where a new endpoint starts).
    pub fn end(&self, conn: &dyn Conn, tenant: &str) -> anyhow::Result<u64> {
        let sql = format!(
            "SELECT MAX({}) FROM {} WHERE tenant = ?1",
            self.key, self.table
        );
        let max = conn.query_opt(&sql, &[tenant.into()], |row| row.get::<Option<i64>>(0))?;
        Ok(max.flatten().map_or(0, |m| m as u64 + 1))
    }

    /// How many events of `tenant` have keys from `from` on.
    pub fn pending(&self, conn: &dyn Conn, tenant: &str, from: u64) -> anyhow::Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE tenant = ?1 AND {} >= ?2",
            self.table, self.key
        );
        Ok(conn
            .query_opt(&sql, &[tenant.into(), from.into()], |row| row.u64(0))?
            .unwrap_or(0))
    }
}

pub const RECORDS: &str = "records";
pub const CHECKPOINTS: &str = "checkpoints";
pub const POLICIES: &str = "policies";

pub static SOURCES: &[Source] = &[
    Source {
        name: RECORDS,
        kinds: &[Kind::ToolCall, Kind::ToolDenied, Kind::AuthFailed],
        read: read_records,
        table: "records",
        key: "tseq",
    },
    Source {
        name: CHECKPOINTS,
        kinds: &[Kind::AuditCheckpoint],
        read: read_checkpoints,
        table: "checkpoints",
        key: "tree_size",
    },
    Source {
        name: POLICIES,
        kinds: &[Kind::PolicyChanged],
        read: read_policies,
        table: "policy_versions",
        key: "version",
    },
];

/// The parameters of a source's read: `tenant`, keys from `from` on, at most `limit`.
fn range(tenant: &str, from: u64, limit: usize) -> [crate::store::Value; 3] {
    [tenant.into(), from.into(), (limit as u64).into()]
}

fn read_records(
    conn: &dyn Conn,
    tenant: &str,
    from: u64,
    limit: usize,
) -> anyhow::Result<Vec<Event>> {
    conn.query(
        "SELECT tseq, id, ts, event, result, json FROM records
         WHERE tenant = ?1 AND tseq >= ?2 ORDER BY tseq LIMIT ?3",
        &range(tenant, from, limit),
        |row| {
            let seq = row.u64(0)?;
            Ok(Event {
                key: seq,
                id: row.get(1)?,
                kind: Kind::of_record(&row.get::<String>(3)?, &row.get::<String>(4)?),
                time_ms: row.get(2)?,
                seq: Some(seq),
                data: serde_json::from_str(&row.get::<String>(5)?)?,
            })
        },
    )
}

fn read_checkpoints(
    conn: &dyn Conn,
    tenant: &str,
    from: u64,
    limit: usize,
) -> anyhow::Result<Vec<Event>> {
    conn.query(
        "SELECT tree_size, root, created_ms, note FROM checkpoints
         WHERE tenant = ?1 AND tree_size >= ?2 ORDER BY tree_size LIMIT ?3",
        &range(tenant, from, limit),
        |row| {
            let (size, root, created_ms, note) = (
                row.u64(0)?,
                row.get::<Vec<u8>>(1)?,
                row.get::<i64>(2)?,
                row.get::<String>(3)?,
            );
            Ok(Event {
                key: size,
                id: format!("checkpoint:{tenant}:{size}"),
                kind: Kind::AuditCheckpoint,
                time_ms: created_ms,
                seq: None,
                data: json!({
                    "origin": note.lines().next().unwrap_or_default(),
                    "treeSize": size,
                    "rootHash": STANDARD.encode(root),
                    "note": note,
                }),
            })
        },
    )
}

fn read_policies(
    conn: &dyn Conn,
    tenant: &str,
    from: u64,
    limit: usize,
) -> anyhow::Result<Vec<Event>> {
    conn.query(
        "SELECT version, hash, received_ms, document FROM policy_versions
         WHERE tenant = ?1 AND version >= ?2 ORDER BY version LIMIT ?3",
        &range(tenant, from, limit),
        |row| {
            let (version, hash, received_ms, document) = (
                row.u64(0)?,
                row.get::<String>(1)?,
                row.get::<i64>(2)?,
                row.get::<String>(3)?,
            );
            Ok(Event {
                key: version,
                id: format!("policy:{tenant}:{version}"),
                kind: Kind::PolicyChanged,
                time_ms: received_ms,
                seq: None,
                data: json!({
                    "version": version,
                    "hash": hash,
                    "policy": serde_json::from_str::<Value>(&document)?,
                }),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_results_map_to_event_kinds() {
        for (event, result, kind) in [
            ("tool.call", "success", Kind::ToolCall),
            ("tool.call", "error", Kind::ToolCall),
            ("tool.denied", "denied", Kind::ToolDenied),
            ("tool.call", "blocked", Kind::ToolDenied),
            ("tool.denied", "rate_limited", Kind::ToolDenied),
            ("auth.failed", "auth_failed", Kind::AuthFailed),
            ("tool.call", "auth_failed", Kind::AuthFailed),
        ] {
            assert_eq!(Kind::of_record(event, result), kind, "{event} {result}");
        }
    }

    #[test]
    fn every_kind_has_a_source() {
        let covered: Vec<Kind> = SOURCES
            .iter()
            .flat_map(|s| s.kinds.iter().copied())
            .collect();
        for kind in [
            Kind::ToolCall,
            Kind::ToolDenied,
            Kind::AuthFailed,
            Kind::AuditCheckpoint,
            Kind::PolicyChanged,
        ] {
            assert!(covered.contains(&kind), "{kind:?}");
        }
    }
}
