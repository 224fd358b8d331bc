//! The webhook tables: `webhooks` (settings, secret, delivery status) and `webhook_cursors`
//! (per endpoint and event source, the next key not yet delivered). They live in the
//! collector's database (SQLite or PostgreSQL, queries written once); every change is a short
//! transaction of its own beside the record writer, so the CLI can change endpoints while the
//! service runs.

use serde::Serialize;

use super::events::{Kind, RECORDS, SOURCES};
use super::formats::Format;
use super::signature;
use super::spec::{Batch, Spec};
use crate::metrics::WebhookGauges;
use crate::store::{Conn, ConnExt, Row, Value};

/// Most endpoints one tenant may have.
pub const MAX_PER_TENANT: usize = 20;

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
pub fn create(conn: &dyn Conn, tenant: &str, spec: &Spec) -> anyhow::Result<Webhook> {
    let random: [u8; 12] = rand::random();
    let id = format!(
        "wh_{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    conn.transaction(|tx| {
        // Replicas creating endpoints of one tenant at once count them one after the other.
        tx.lock_tenant(tenant)?;
        let count = tx
            .query_opt(
                "SELECT COUNT(*) FROM webhooks WHERE tenant = ?1",
                &[tenant.into()],
                |r| r.u64(0),
            )?
            .unwrap_or(0);
        anyhow::ensure!(
            (count as usize) < MAX_PER_TENANT,
            "a tenant may have at most {MAX_PER_TENANT} webhooks"
        );
        tx.execute(
            "INSERT INTO webhooks (id, tenant, url, events, format, hec_token, max_events,
                max_wait_ms, secret, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            &[
                (&id).into(),
                tenant.into(),
                (&spec.url).into(),
                serde_json::to_string(&spec.events)?.into(),
                serde_json::to_string(&spec.format)?.into(),
                spec.hec_token.as_deref().into(),
                i64::from(spec.batch.max_events).into(),
                spec.batch.max_wait_ms.into(),
                signature::new_secret().into(),
                now_ms().into(),
            ],
        )?;
        for source in SOURCES {
            set_cursor(tx, &id, source.name, source.end(tx, tenant)?)?;
        }
        Ok(())
    })?;
    get(conn, tenant, &id)?.ok_or_else(|| anyhow::anyhow!("webhook {id} vanished"))
}

fn set_cursor(conn: &dyn Conn, id: &str, source: &str, next: u64) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO webhook_cursors (webhook, source, next) VALUES (?1, ?2, ?3)
         ON CONFLICT (webhook, source) DO UPDATE SET next = excluded.next",
        &[id.into(), source.into(), next.into()],
    )?;
    Ok(())
}

/// The cursor of `id` on `source` (0 when it has none yet: a source added later starts at the
/// beginning).
pub fn cursor(conn: &dyn Conn, id: &str, source: &str) -> anyhow::Result<u64> {
    Ok(conn
        .query_opt(
            "SELECT next FROM webhook_cursors WHERE webhook = ?1 AND source = ?2",
            &[id.into(), source.into()],
            |r| r.u64(0),
        )?
        .unwrap_or(0))
}

/// Moves the cursor of `id` on `source` from `from` to `to`, unless a replay (of any replica)
/// moved it meanwhile: one compare-and-set statement.
pub fn advance(conn: &dyn Conn, id: &str, source: &str, from: u64, to: u64) -> anyhow::Result<()> {
    let params = [id.into(), source.into(), from.into(), to.into()];
    let moved = conn.execute(
        "UPDATE webhook_cursors SET next = ?4 WHERE webhook = ?1 AND source = ?2 AND next = ?3",
        &params,
    )?;
    if moved == 0 && from == 0 {
        // A source added after the endpoint has no cursor row yet.
        conn.execute(
            "INSERT INTO webhook_cursors (webhook, source, next) VALUES (?1, ?2, ?4)
             ON CONFLICT (webhook, source) DO NOTHING",
            &params,
        )?;
    }
    Ok(())
}

const COLUMNS: &str = "id, tenant, url, events, format, hec_token, max_events, max_wait_ms, secret,
    enabled, disabled_reason, last_attempt_ms, last_success_ms, last_error, failures,
    next_attempt_ms";

fn json<T: serde::de::DeserializeOwned>(row: &Row, i: usize) -> anyhow::Result<T> {
    Ok(serde_json::from_str(&row.get::<String>(i)?)?)
}

fn from_row(row: &Row) -> anyhow::Result<Webhook> {
    Ok(Webhook {
        id: row.get(0)?,
        tenant: row.get(1)?,
        spec: Spec {
            url: row.get(2)?,
            events: json(row, 3)?,
            format: json(row, 4)?,
            hec_token: row.get(5)?,
            batch: Batch {
                max_events: u32::try_from(row.get::<i64>(6)?)?,
                max_wait_ms: row.u64(7)?,
            },
        },
        secret: row.get(8)?,
        enabled: row.get::<i64>(9)? != 0,
        disabled_reason: row.get(10)?,
        last_attempt_ms: row.get(11)?,
        last_success_ms: row.get(12)?,
        last_error: row.get(13)?,
        failures: u32::try_from(row.get::<i64>(14)?)?,
        next_attempt_ms: row.get(15)?,
    })
}

/// The endpoints matching `filter` (a `WHERE` clause over `params`).
fn select(conn: &dyn Conn, filter: &str, params: &[Value]) -> anyhow::Result<Vec<Webhook>> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM webhooks WHERE {filter}"),
        params,
        from_row,
    )
}

/// Endpoints of `tenant` (of every tenant when `None`), oldest first.
pub fn list(conn: &dyn Conn, tenant: Option<&str>) -> anyhow::Result<Vec<Webhook>> {
    select(
        conn,
        "CAST(?1 AS TEXT) IS NULL OR tenant = ?1 ORDER BY created_ms, id",
        &[tenant.into()],
    )
}

/// Enabled endpoints whose next attempt is due at `now_ms`.
pub fn due(conn: &dyn Conn, now_ms: i64) -> anyhow::Result<Vec<Webhook>> {
    select(
        conn,
        "enabled = 1 AND next_attempt_ms <= ?1",
        &[now_ms.into()],
    )
}

/// The endpoint `id` of `tenant`; `None` for another tenant's.
pub fn get(conn: &dyn Conn, tenant: &str, id: &str) -> anyhow::Result<Option<Webhook>> {
    Ok(select(conn, "tenant = ?1 AND id = ?2", &[tenant.into(), id.into()])?.pop())
}

/// The endpoint `id` whatever its tenant (the CLI's view).
pub fn find(conn: &dyn Conn, id: &str) -> anyhow::Result<Option<Webhook>> {
    Ok(select(conn, "id = ?1", &[id.into()])?.pop())
}

pub fn delete(conn: &dyn Conn, id: &str) -> anyhow::Result<bool> {
    conn.transaction(|tx| {
        tx.execute(
            "DELETE FROM webhook_cursors WHERE webhook = ?1",
            &[id.into()],
        )?;
        Ok(tx.execute("DELETE FROM webhooks WHERE id = ?1", &[id.into()])? == 1)
    })
}

/// Enables `id` again and makes it due now.
pub fn enable(conn: &dyn Conn, id: &str) -> anyhow::Result<bool> {
    Ok(conn.execute(
        "UPDATE webhooks SET enabled = 1, disabled_reason = NULL, failures = 0,
            next_attempt_ms = 0 WHERE id = ?1",
        &[id.into()],
    )? == 1)
}

/// Sends again every record from sequence number `from_seq` on, and the checkpoints that cover
/// them (tree size above `from_seq`). Other sources keep their cursors.
pub fn replay(conn: &dyn Conn, id: &str, from_seq: u64) -> anyhow::Result<()> {
    conn.transaction(|tx| {
        set_cursor(tx, id, RECORDS, from_seq)?;
        set_cursor(tx, id, super::events::CHECKPOINTS, from_seq + 1)?;
        tx.execute(
            "UPDATE webhooks SET next_attempt_ms = 0 WHERE id = ?1",
            &[id.into()],
        )?;
        Ok(())
    })
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
    conn: &dyn Conn,
    id: &str,
    now_ms: i64,
    outcome: &Outcome,
) -> anyhow::Result<()> {
    match outcome {
        Outcome::Delivered => conn.execute(
            "UPDATE webhooks SET last_attempt_ms = ?2, last_success_ms = ?2, last_error = NULL,
                failures = 0, next_attempt_ms = 0 WHERE id = ?1",
            &[id.into(), now_ms.into()],
        ),
        Outcome::Failed { error, retry_at_ms } => conn.execute(
            "UPDATE webhooks SET last_attempt_ms = ?2, last_error = ?3, failures = failures + 1,
                next_attempt_ms = ?4 WHERE id = ?1",
            &[
                id.into(),
                now_ms.into(),
                error.into(),
                (*retry_at_ms).into(),
            ],
        ),
        Outcome::Disabled { reason } => conn.execute(
            "UPDATE webhooks SET last_attempt_ms = ?2, last_error = ?3, disabled_reason = ?3,
                enabled = 0, failures = failures + 1 WHERE id = ?1",
            &[id.into(), now_ms.into(), reason.into()],
        ),
    }?;
    Ok(())
}

/// The status view of `hook`, with its lag counted from its cursors.
pub fn view(conn: &dyn Conn, hook: &Webhook) -> anyhow::Result<View> {
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

/// Every endpoint's delivery state, for the metrics. The lag is the records of its tenant
/// appended since its cursor (an index lookup, not a count), for endpoints that subscribe to
/// record events.
pub fn gauges(conn: &dyn Conn) -> anyhow::Result<Vec<WebhookGauges>> {
    let records = SOURCES
        .iter()
        .find(|s| s.name == RECORDS)
        .ok_or_else(|| anyhow::anyhow!("no {RECORDS} source"))?;
    list(conn, None)?
        .into_iter()
        .map(|hook| {
            let lag_records = if records.kinds.iter().any(|k| hook.spec.events.contains(k)) {
                let end = records.end(conn, &hook.tenant)?;
                Some(end.saturating_sub(cursor(conn, &hook.id, RECORDS)?))
            } else {
                None
            };
            Ok(WebhookGauges {
                tenant: hook.tenant,
                id: hook.id,
                enabled: hook.enabled,
                lag_records,
                consecutive_failures: hook.failures,
            })
        })
        .collect()
}
