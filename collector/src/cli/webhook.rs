//! `acp-collector webhook ...` (working on the database, whether or not the service runs; the
//! service picks changes up on its next poll) and the delivery flags of `serve`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::ledger::TreeBackfill;
use crate::store::{Store, Tables};
use crate::webhooks::db;
use crate::webhooks::delivery::RetryPolicy;
use crate::webhooks::spec::RawSpec;
use crate::webhooks::ssrf::AllowList;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Create an endpoint and print it as JSON with its signing secret, which is shown only
    /// this once. The URL must resolve to public addresses unless `--webhook-allow-cidrs`
    /// allows its range.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        url: String,
        /// Event types, comma-separated: tool.call, tool.denied, auth.failed,
        /// audit.checkpoint, policy.changed.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// json, ocsf or splunk-hec.
        #[arg(long, default_value = "json")]
        format: String,
        /// Most events per request (1 to 1000; default 100).
        #[arg(long)]
        max_events: Option<u32>,
        /// Longest wait in milliseconds for a partial batch to fill (default 1000).
        #[arg(long)]
        max_wait_ms: Option<u64>,
        /// The HEC token of a splunk-hec endpoint (sent as `Authorization: Splunk <token>`).
        #[arg(long)]
        hec_token: Option<String>,
    },
    /// List endpoints with their delivery status, as JSON.
    List {
        /// Only this tenant's endpoints (default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Delete an endpoint.
    Delete { id: String },
    /// Enable an endpoint again (after a 410 Gone) and retry it now.
    Enable { id: String },
    /// Send again every record from a sequence number on (and the checkpoints covering them).
    Replay {
        id: String,
        #[arg(long)]
        from_seq: u64,
    },
}

/// Delivery retries of `serve`.
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// First delay in milliseconds before a failed webhook delivery is retried; it doubles
    /// with each further failure (jittered).
    #[arg(long, env = "ACP_WEBHOOK_RETRY_INITIAL_MS", value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_initial_ms: u64,
    /// Longest delay in milliseconds between retries.
    #[arg(long, env = "ACP_WEBHOOK_RETRY_MAX_MS", value_name = "MS", default_value_t = 300_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_max_ms: u64,
}

impl DeliveryArgs {
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(self.webhook_retry_initial_ms),
            max: Duration::from_millis(
                self.webhook_retry_max_ms.max(self.webhook_retry_initial_ms),
            ),
        }
    }
}

pub fn run(database: &Store, allow: &AllowList, command: WebhookCommand) -> anyhow::Result<()> {
    let conn = database
        .create_schema(Tables::WithWebhooks, &mut TreeBackfill::default())
        .and_then(|()| database.write())
        .with_context(|| format!("cannot open {}", database.describe()))?;
    let conn = &*conn;
    let mut out = std::io::stdout().lock();
    let missing = |id: &str| anyhow::anyhow!("no webhook {id:?}");
    match command {
        WebhookCommand::Create {
            tenant,
            url,
            events,
            format,
            max_events,
            max_wait_ms,
            hec_token,
        } => {
            anyhow::ensure!(!tenant.is_empty(), "the tenant must not be empty");
            let raw: RawSpec = serde_json::from_value(json!({
                "url": url,
                "events": events,
                "format": format,
                "batch": { "maxEvents": max_events, "maxWaitMs": max_wait_ms },
                "hecToken": hec_token,
            }))?;
            let spec = raw.validate(allow).map_err(anyhow::Error::msg)?;
            allow
                .check_url_resolved(&spec.url)
                .map_err(anyhow::Error::msg)?;
            let hook = db::create(conn, &tenant, &spec)?;
            let mut shown = serde_json::to_value(db::view(conn, &hook)?)?;
            shown["secret"] = hook.secret.into();
            writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
        }
        WebhookCommand::List { tenant } => {
            let views = db::list(conn, tenant.as_deref())?
                .iter()
                .map(|hook| db::view(conn, hook))
                .collect::<Result<Vec<_>, _>>()?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json!({ "webhooks": views }))?
            )?;
        }
        WebhookCommand::Delete { id } => {
            anyhow::ensure!(db::delete(conn, &id)?, missing(&id));
            eprintln!("deleted {id}");
        }
        WebhookCommand::Enable { id } => {
            anyhow::ensure!(db::enable(conn, &id)?, missing(&id));
            eprintln!("enabled {id}");
        }
        WebhookCommand::Replay { id, from_seq } => {
            db::find(conn, &id)?.ok_or_else(|| missing(&id))?;
            db::replay(conn, &id, from_seq)?;
            eprintln!("{id} replays from sequence number {from_seq}");
        }
    }
    Ok(())
}
