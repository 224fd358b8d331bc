//! The records: inserting one and the export query. The schema is in `schema/`.
//!
//! `records` is append-only, enforced by the database itself: triggers abort every UPDATE, and
//! every DELETE but that of records an expiry note covers (retention). `seq` (the rowid) is the
//! arrival order; exports are ordered by `(ts, seq)`, which the `records_export` index serves.
//! `tseq` is the record's gapless sequence number within its tenant, its leaf index in the
//! tenant's Merkle tree, and `hashes` the tree hashes stored with it ([`crate::ledger::merkle`]).
//! `checkpoints` and `expiries` hold the signed notes of [`crate::ledger::checkpoints`].
//! `json` is the canonical JSON of the validated record, returned verbatim by the export API. Writes go through [`crate::ledger::writer`]; reads open their own
//! connections, which WAL mode lets run beside the writer and the `apikey` subcommands.

use acp_record::AuditRecord;
use serde::Serialize;

use std::collections::HashSet;

use super::{json_list, Backend, Conn, ConnExt, Value};

/// The JSON name of a unit enum variant (`Outcome::AuthFailed` → `auth_failed`).
pub fn wire_name<T: Serialize>(value: &T) -> serde_json::Result<String> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(name) => Ok(name),
        other => Err(serde::ser::Error::custom(format!(
            "not a unit enum variant: {other}"
        ))),
    }
}

/// A validated record with its indexed columns, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub id: String,
    pub tenant: String,
    pub ts: i64,
    pub sub: Option<String>,
    pub email: Option<String>,
    pub tool: Option<String>,
    pub result: String,
    pub event: String,
    pub json: String,
    /// The correlation fields the export filters match ([`CORRELATION_COLUMNS`]).
    pub session_id: Option<String>,
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    pub source_address: Option<String>,
}

impl NewRecord {
    /// `ts` is the record's timestamp in milliseconds (from [`AuditRecord::timestamp_millis`]).
    pub fn new(record: AuditRecord, ts: i64) -> serde_json::Result<Self> {
        Ok(Self {
            json: serde_json::to_string(&record)?,
            result: wire_name(&record.result)?,
            event: wire_name(&record.event)?,
            id: record.id,
            tenant: record.tenant_id,
            ts,
            sub: record.sub,
            email: record.email,
            tool: record.tool,
            session_id: record.session_id,
            trace_id: record.trace_id,
            request_id: record.request_id,
            source_address: record.source_address,
        })
    }
}

/// The columns [`insert_all`] fills, in the order of [`row`]'s values.
const COLUMNS: [&str; 15] = [
    "id",
    "tenant",
    "ts",
    "sub",
    "email",
    "tool",
    "result",
    "event",
    "json",
    "tseq",
    "hashes",
    CORRELATION_COLUMNS[0],
    CORRELATION_COLUMNS[1],
    CORRELATION_COLUMNS[2],
    CORRELATION_COLUMNS[3],
];

/// The values of `record` stored as `tseq` of its tenant with its tree `hashes`.
fn row(record: &NewRecord, tseq: u64, hashes: Vec<u8>) -> Vec<Value> {
    vec![
        record.id.as_str().into(),
        record.tenant.as_str().into(),
        record.ts.into(),
        record.sub.as_deref().into(),
        record.email.as_deref().into(),
        record.tool.as_deref().into(),
        record.result.as_str().into(),
        record.event.as_str().into(),
        record.json.as_str().into(),
        tseq.into(),
        Value::Blob(hashes),
        record.session_id.as_deref().into(),
        record.trace_id.as_deref().into(),
        record.request_id.as_deref().into(),
        record.source_address.as_deref().into(),
    ]
}

/// Inserts each record as the `tseq` of its tenant with its tree `hashes`, in one go. Their
/// ids must be new ([`stored_ids`]): a stored one fails the whole call.
pub fn insert_all(conn: &dyn Conn, records: Vec<(&NewRecord, u64, Vec<u8>)>) -> anyhow::Result<()> {
    let rows: Vec<Vec<Value>> = records
        .into_iter()
        .map(|(record, tseq, hashes)| row(record, tseq, hashes))
        .collect();
    conn.insert_rows("records", &COLUMNS, &rows)
}

/// Which of `ids` are stored already, in one query.
pub fn stored_ids(conn: &dyn Conn, ids: &[&str]) -> anyhow::Result<HashSet<String>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT id FROM records WHERE id IN (SELECT list.value FROM {})",
        json_list(conn.backend())
    );
    let mut stored = HashSet::new();
    conn.for_each(&sql, &[serde_json::to_string(ids)?.into()], &mut |row| {
        stored.insert(row.get(0)?);
        Ok(())
    })?;
    Ok(stored)
}

/// Inserts `record` as `tseq` of its tenant with its tree `hashes`, unless its id is already
/// stored; returns whether it was inserted. For tests that fill a store without a ledger.
#[cfg(test)]
pub fn insert(
    conn: &dyn Conn,
    record: &NewRecord,
    tseq: u64,
    hashes: &[u8],
) -> anyhow::Result<bool> {
    if !stored_ids(conn, &[&record.id])?.is_empty() {
        return Ok(false);
    }
    insert_all(conn, vec![(record, tseq, hashes.to_vec())])?;
    Ok(true)
}

/// Which records of one tenant an export wants. Time bounds are Unix milliseconds, `from`
/// inclusive and `to` exclusive; `result` and `event` are wire names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub tenant: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Matches `sub` or `email`.
    pub user: Option<String>,
    pub tool: Option<String>,
    pub result: Option<String>,
    pub event: Option<String>,
    /// Exact matches on the record's correlation fields (`sessionId`, `traceId`, `requestId`,
    /// `sourceAddress`); a record without the field matches none.
    pub session: Option<String>,
    pub trace: Option<String>,
    pub request: Option<String>,
    pub source: Option<String>,
}

pub use super::correlation_columns::CORRELATION_COLUMNS;

/// The SQL expression of top-level text field `field` of the stored JSON.
pub fn json_field(backend: Backend, field: &str) -> String {
    match backend {
        Backend::Sqlite => format!("json_extract(json, '$.{field}')"),
        Backend::Postgres => format!("(json::jsonb ->> '{field}')"),
    }
}

/// A place in the export order: the `(ts, seq)` of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub ts: i64,
    pub seq: i64,
}

/// A stored record: where it is in the export order, its sequence number in its tenant's
/// tree and its JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub position: Position,
    pub tseq: u64,
    pub json: String,
}

/// The `WHERE` clause selecting `filter`'s records after `after`, and its arguments.
pub fn where_clause(filter: &Filter, after: Option<Position>) -> (String, Vec<Value>) {
    let mut sql = String::from(" WHERE tenant = ?");
    let mut args = vec![Value::from(filter.tenant.clone())];
    let mut condition = |clause: &str, values: &[Value]| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.extend_from_slice(values);
    };
    if let Some(from) = filter.from {
        condition("ts >= ?", &[from.into()]);
    }
    if let Some(to) = filter.to {
        condition("ts < ?", &[to.into()]);
    }
    if let Some(p) = after {
        condition("(ts, seq) > (?, ?)", &[p.ts.into(), p.seq.into()]);
    }
    if let Some(user) = &filter.user {
        condition(
            "(sub = ? OR email = ?)",
            &[user.clone().into(), user.clone().into()],
        );
    }
    for (column, value) in [
        ("tool", &filter.tool),
        ("result", &filter.result),
        ("event", &filter.event),
    ] {
        if let Some(value) = value {
            condition(&format!("{column} = ?"), &[value.clone().into()]);
        }
    }
    for (column, value) in CORRELATION_COLUMNS.into_iter().zip([
        &filter.session,
        &filter.trace,
        &filter.request,
        &filter.source,
    ]) {
        if let Some(value) = value {
            condition(&format!("{column} = ?"), &[value.clone().into()]);
        }
    }
    (sql, args)
}

/// Up to `limit` records matching `filter` that come after `after`, in `(ts, seq)` order.
pub fn query_page(
    conn: &dyn Conn,
    filter: &Filter,
    after: Option<Position>,
    limit: usize,
) -> anyhow::Result<Vec<StoredRecord>> {
    let (clause, mut args) = where_clause(filter, after);
    let sql = format!("SELECT ts, seq, json, tseq FROM records{clause} ORDER BY ts, seq LIMIT ?");
    args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    conn.query(&sql, &args, |row| {
        Ok(StoredRecord {
            position: Position {
                ts: row.get(0)?,
                seq: row.get(1)?,
            },
            json: row.get(2)?,
            tseq: row.u64(3)?,
        })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::testing::open_rw;
    use serde_json::{json, Value};

    /// A valid `tool.call` record in the shape of the reference sample.
    pub(crate) fn sample(id: &str, timestamp: &str) -> Value {
        json!({
            "id": id,
            "event": "tool.call",
            "timestamp": timestamp,
            "sub": "auth0|alice",
            "email": "alice@acme.com",
            "tool": "salesforce.query",
            "input": {"query": "SELECT Name FROM Opportunity"},
            "scopes": ["salesforce:read"],
            "scopeRequired": ["salesforce:read"],
            "scopeResult": "pass",
            "contentScan": null,
            "result": "success",
            "reason": null,
            "latencyMs": 142.5,
            "tenantId": "org_acme_corp",
            "clientType": "claude-desktop",
            "clientId": "claude-desktop-app",
            "delegationChain": null
        })
    }

    fn new_record(id: &str, timestamp: &str) -> NewRecord {
        let record: AuditRecord = serde_json::from_value(sample(id, timestamp)).unwrap();
        let ts = record.timestamp_millis().unwrap();
        NewRecord::new(record, ts).unwrap()
    }

    #[test]
    fn append_only_and_ordered_by_timestamp_then_arrival() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_rw(&dir.path().join("db"));
        let journal: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!((journal.as_str(), synchronous), ("wal", 2), "2 is FULL");
        let later = new_record("b", "2026-03-15T14:23:07.142Z");
        let earlier = new_record("a", "2026-03-14T00:00:00.000Z");
        let same_ts = new_record("c", "2026-03-15T14:23:07.142Z");
        for (tseq, r) in [&later, &earlier, &same_ts].into_iter().enumerate() {
            assert!(insert(&conn, r, tseq as u64, &[0; 32]).unwrap());
        }
        assert!(
            !insert(&conn, &later, 3, &[0; 32]).unwrap(),
            "duplicate id stored twice"
        );

        let filter = Filter {
            tenant: "org_acme_corp".into(),
            ..Filter::default()
        };
        let all = query_page(&conn, &filter, None, 10).unwrap();
        let ids: Vec<Value> = all
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.json).unwrap()["id"].clone())
            .collect();
        assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);
        let rest = query_page(&conn, &filter, Some(all[1].position), 10).unwrap();
        assert_eq!(rest, all[2..]);

        for sql in ["UPDATE records SET tool = 'x'", "DELETE FROM records"] {
            let err = conn.execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
    }

    #[test]
    fn export_query_uses_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_rw(&dir.path().join("db"));
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT ts, seq, json FROM records WHERE tenant = 't'
                 AND ts >= 1 AND ts < 2 AND (ts, seq) > (1, 1) ORDER BY ts, seq LIMIT 10",
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("records_export"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
