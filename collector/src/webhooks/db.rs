//! The webhook tables: `webhooks` (settings, secret, delivery status) and `webhook_cursors`
//! (per endpoint and event source, the next key not yet delivered). They live in the
//! collector's database; every change is a short transaction of its own beside the record
//! writer, so the CLI can change endpoints while the service runs.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::events::{Kind, RECORDS, SOURCES};
use super::formats::Format;
use super::signature;
use super::spec::{Batch, Spec};

/// Most endpoints one tenant may have.
pub const MAX_PER_TENANT: usize = 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhooks (
    id              TEXT    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    events          TEXT    NOT NULL,
    format          TEXT    NOT NULL,
    hec_token       TEXT,
    max_events      INTEGER NOT NULL,
    max_wait_ms     INTEGER NOT NULL,
    secret          TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    last_attempt_ms INTEGER,
    last_success_ms INTEGER,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhooks_tenant ON webhooks (tenant);
CREATE TABLE IF NOT EXISTS webhook_cursors (
    webhook TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    next    INTEGER NOT NULL,
    PRIMARY KEY (webhook, source)
);
";

/// Opens the database read-write with the webhook tables.
pub fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = crate::store::open_rw(path)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub tenant: String,
    pub spec: Spec,
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub last_attempt_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub next_attempt_ms: i64,
}

/// What the API and `webhook list` show: settings and delivery status, never the secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub events: Vec<Kind>,
    pub format: Format,
    pub batch: BatchView,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Records with a lower sequence number have been delivered (or were not subscribed).
    pub delivered_seq: u64,
    /// Subscribed-source events not yet delivered.
    pub lag: u64,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    pub max_events: u32,
    pub max_wait_ms: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Creates an endpoint whose cursors start at the current end of every source (only new
/// events are sent; replay sends older ones); returns it with its secret.
pub fn create(conn: &mut Connection, tenant: &str, spec: &Spec) -> anyhow::Result<Webhook> {
    let tx = conn.transaction()?;
    let count: i64 = tx.query_row(
        "SELECT COUNT(*) FROM webhooks WHERE tenant = ?1",
        [tenant],
        |r| r.get(0),
    )?;
    anyhow::ensure!(
        (count as usize) < MAX_PER_TENANT,
        "a tenant may have at most {MAX_PER_TENANT} webhooks"
    );
    let random: [u8; 12] = rand::random();
    let id = format!(
        "wh_{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    tx.execute(
        "INSERT INTO webhooks (id, tenant, url, events, format, hec_token, max_events,
            max_wait_ms, secret, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            id,
            tenant,
            spec.url,
            serde_json::to_string(&spec.events)?,
            serde_json::to_string(&spec.format)?,
            spec.hec_token,
            spec.batch.max_events,
            spec.batch.max_wait_ms as i64,
            signature::new_secret(),
            now_ms()
        ],
    )?;
    for source in SOURCES {
        let end = source.end(&tx, tenant)?;
        set_cursor(&tx, &id, source.name, end)?;
    }
    tx.commit()?;
    get(conn, tenant, &id)?.ok_or_else(|| anyhow::anyhow!("webhook {id} vanished"))
}

fn set_cursor(conn: &Connection, id: &str, source: &str, next: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO webhook_cursors (webhook, source, next) VALUES (?1, ?2, ?3)
         ON CONFLICT (webhook, source) DO UPDATE SET next = excluded.next",
    )?
    .execute(params![id, source, next as i64])?;
    Ok(())
}

/// The cursor of `id` on `source` (0 when it has none yet: a source added later starts at the
/// beginning).
pub fn cursor(conn: &Connection, id: &str, source: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT next FROM webhook_cursors WHERE webhook = ?1 AND source = ?2")?
        .query_row([id, source], |r| r.get::<_, i64>(0))
        .optional()
        .map(|n| n.map_or(0, |n| n as u64))
}

/// Moves the cursor of `id` on `source` from `from` to `to`, unless a replay moved it
/// meanwhile.
pub fn advance(
    conn: &Connection,
    id: &str,
    source: &str,
    from: u64,
    to: u64,
) -> rusqlite::Result<()> {
    if from == cursor(conn, id, source)? {
        set_cursor(conn, id, source, to)?;
    }
    Ok(())
}

const COLUMNS: &str = "id, tenant, url, events, format, hec_token, max_events, max_wait_ms, secret,
    enabled, disabled_reason, last_attempt_ms, last_success_ms, last_error, failures,
    next_attempt_ms";

fn json<T: serde::de::DeserializeOwned>(row: &Row, i: usize) -> rusqlite::Result<T> {
    serde_json::from_str(&row.get::<_, String>(i)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn from_row(row: &Row) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: row.get(0)?,
        tenant: row.get(1)?,
        spec: Spec {
            url: row.get(2)?,
            events: json(row, 3)?,
            format: json(row, 4)?,
            hec_token: row.get(5)?,
            batch: Batch {
                max_events: row.get(6)?,
                max_wait_ms: row.get::<_, i64>(7)? as u64,
            },
        },
        secret: row.get(8)?,
        enabled: row.get(9)?,
        disabled_reason: row.get(10)?,
        last_attempt_ms: row.get(11)?,
        last_success_ms: row.get(12)?,
        last_error: row.get(13)?,
        failures: row.get(14)?,
        next_attempt_ms: row.get(15)?,
    })
}

/// Endpoints of `tenant` (of every tenant when `None`), oldest first.
pub fn list(conn: &Connection, tenant: Option<&str>) -> rusqlite::Result<Vec<Webhook>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_ms, id"
    ))?
    .query_map([tenant], from_row)?
    .collect()
}

/// Enabled endpoints whose next attempt is due at `now_ms`.
pub fn due(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<Webhook>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE enabled AND next_attempt_ms <= ?1"
    ))?
    .query_map([now_ms], from_row)?
    .collect()
}

/// The endpoint `id` of `tenant`; `None` for another tenant's.
pub fn get(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<Webhook>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row([tenant, id], from_row)
    .optional()
}

/// The endpoint `id` whatever its tenant (the CLI's view).
pub fn find(conn: &Connection, id: &str) -> rusqlite::Result<Option<Webhook>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()
}

pub fn delete(conn: &mut Connection, id: &str) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM webhook_cursors WHERE webhook = ?1", [id])?;
    let deleted = tx.execute("DELETE FROM webhooks WHERE id = ?1", [id])? == 1;
    tx.commit()?;
    Ok(deleted)
}

/// Enables `id` again and makes it due now.
pub fn enable(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE webhooks SET enabled = 1, disabled_reason = NULL, failures = 0,
            next_attempt_ms = 0 WHERE id = ?1",
        [id],
    )? == 1)
}

/// Sends again every record from sequence number `from_seq` on, and the checkpoints that cover
/// them (tree size above `from_seq`). Other sources keep their cursors.
pub fn replay(conn: &mut Connection, id: &str, from_seq: u64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    set_cursor(&tx, id, RECORDS, from_seq)?;
    set_cursor(&tx, id, super::events::CHECKPOINTS, from_seq + 1)?;
    tx.execute(
        "UPDATE webhooks SET next_attempt_ms = 0 WHERE id = ?1",
        [id],
    )?;
    tx.commit()
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Retry at `retry_at_ms`.
    Failed {
        error: String,
        retry_at_ms: i64,
    },
    /// The receiver said the endpoint is gone.
    Disabled {
        reason: String,
    },
}

pub fn record_attempt(
    conn: &Connection,
    id: &str,
    now_ms: i64,
    outcome: &Outcome,
) -> rusqlite::Result<()> {
    match outcome {
        Outcome::Delivered => conn.execute(
            "UPDATE webhooks SET last_attempt_ms = ?2, last_success_ms = ?2, last_error = NULL,
                failures = 0, next_attempt_ms = 0 WHERE id = ?1",
            params![id, now_ms],
        ),
        Outcome::Failed { error, retry_at_ms } => conn.execute(
            "UPDATE webhooks SET last_attempt_ms = ?2, last_error = ?3, failures = failures + 1,
                next_attempt_ms = ?4 WHERE id = ?1",
            params![id, now_ms, error, retry_at_ms],
        ),
        Outcome::Disabled { reason } => conn.execute(
            "UPDATE webhooks SET last_attempt_ms = ?2, last_error = ?3, disabled_reason = ?3,
                enabled = 0, failures = failures + 1 WHERE id = ?1",
            params![id, now_ms, reason],
        ),
    }?;
    Ok(())
}

/// The status view of `hook`, with its lag counted from its cursors.
pub fn view(conn: &Connection, hook: &Webhook) -> rusqlite::Result<View> {
    let time = |ms: Option<i64>| ms.and_then(acp_record::format_timestamp);
    let mut lag = 0;
    for source in SOURCES {
        if source.kinds.iter().any(|k| hook.spec.events.contains(k)) {
            lag += source.pending(conn, &hook.tenant, cursor(conn, &hook.id, source.name)?)?;
        }
    }
    Ok(View {
        id: hook.id.clone(),
        tenant: hook.tenant.clone(),
        url: hook.spec.url.clone(),
        events: hook.spec.events.iter().copied().collect(),
        format: hook.spec.format,
        batch: BatchView {
            max_events: hook.spec.batch.max_events,
            max_wait_ms: hook.spec.batch.max_wait_ms,
        },
        enabled: hook.enabled,
        disabled_reason: hook.disabled_reason.clone(),
        delivered_seq: cursor(conn, &hook.id, RECORDS)?,
        lag,
        last_attempt_at: time(hook.last_attempt_ms),
        last_success_at: time(hook.last_success_ms),
        last_error: hook.last_error.clone(),
        consecutive_failures: hook.failures,
    })
}
