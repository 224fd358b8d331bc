//! Starting and stopping the HTTP service.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ServeArgs;
use crate::http::auth::IngestToken;
use crate::http::router;
use crate::http::state::AppState;
use crate::ledger::signing::SigningKey;
use crate::ledger::writer::Writer;
use crate::ledger::{Ledger, Policy};
use crate::store::Database;
use crate::{policies, webhooks};

/// Serves until SIGINT or SIGTERM, then finishes the requests in flight (and so their
/// commits) and stops the writer. The caller keeps a clone of `db` and drops it outside the
/// runtime (PostgreSQL clients close with a blocking call).
pub async fn run(
    db: Database,
    signing_key: &Path,
    log_name: &str,
    webhook_allow_cidrs: webhooks::AllowList,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let token = args
        .ingest_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .context(
            "the ingest token is required: pass --ingest-token, set ACP_INGEST_TOKEN \
         or set ingest_token in the --config file",
        )?;
    let key = SigningKey::load_or_create(signing_key, log_name)?;
    let vkey = key.vkey().to_owned();
    let policy = Policy {
        log_name: log_name.to_owned(),
        checkpoint_records: args.checkpoint_records,
        retention_days: args.retention_days,
        tenant_retention_days: args.tenant_retention_days.clone(),
    };
    // The database clients block: they run outside the async tasks.
    let store = db.clone();
    let (conn, ledger) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let conn = store.write()?;
        let ledger = Ledger::load(&*conn, key, policy, chrono::Utc::now().timestamp_millis())?;
        Ok((conn, ledger))
    })
    .await??;
    let (writer, writer_thread) = Writer::start(db.clone(), conn, ledger)?;
    let ticker = tokio::spawn(tick_every(
        writer.clone(),
        Duration::from_secs(args.checkpoint_interval),
    ));
    let hooks = webhooks::Settings {
        allow: Arc::new(webhook_allow_cidrs),
        retry: args.webhooks.retry(),
    };
    let deliveries = webhooks::spawn(db.clone(), hooks.clone())?;
    let state = AppState {
        db: db.clone(),
        writer,
        ingest_token: Arc::new(IngestToken::new(token)),
        signer: policies::signer(SigningKey::load_or_create(signing_key, log_name)?, log_name),
        webhooks: hooks,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        db = %db.describe(),
        max_body_bytes = args.max_body_bytes,
        signing_key = %vkey,
        "acp-collector started"
    );
    axum::serve(listener, router(state, args.max_body_bytes))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    ticker.abort();
    let _ = ticker.await;
    deliveries.abort();
    // The router, and with it every `Writer`, is gone: the writer commits what it has and ends.
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    tracing::info!("acp-collector stopped");
    Ok(())
}

/// Asks the writer for due checkpoints and expiries every `period`.
async fn tick_every(writer: Writer, period: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if writer.tick().await.is_err() {
            return;
        }
    }
}

async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM; only SIGINT stops the service");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
