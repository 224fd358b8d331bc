//! Starting and stopping the HTTP service.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::apikeys::IngestToken;
use crate::http::router;
use crate::http::state::AppState;
use crate::ledger::signing::SigningKey;
use crate::ledger::writer::Writer;
use crate::ledger::{Ledger, Policy, TreeBackfill};
use crate::metrics::Metrics;
use crate::settings::{ServeSettings, Settings};
use crate::store::{Store, Tables};
use crate::{policies, webhooks};

/// Runs `serve`: the blocking startup (the signing key, created and synced when missing; the
/// schema; the ledger) before the runtime starts, then the service on it. `db` is dropped by
/// the caller, outside the runtime (PostgreSQL clients close with a blocking call).
pub fn serve(db: &Store, settings: &Settings, serve: ServeSettings) -> anyhow::Result<()> {
    let (signing_key, log_name) = (&settings.signing_key, settings.log_name.as_str());
    let key = SigningKey::load_or_create(signing_key, log_name)?;
    let vkey = key.vkey().to_owned();
    let policy = Policy {
        log_name: log_name.to_owned(),
        checkpoint_records: serve.checkpoint_records,
        retention_days: serve.retention_days,
        tenant_retention_days: serve.tenant_retention_days.clone(),
    };
    db.create_schema(Tables::WithWebhooks, &mut TreeBackfill::default())?;
    let conn = db.write()?;
    let ledger = Ledger::load(&*conn, key, policy, chrono::Utc::now().timestamp_millis())?;
    let metrics = Arc::new(Metrics::new());
    let (writer, writer_thread) = Writer::start(db.clone(), conn, ledger, metrics.clone())?;
    let signer = policies::signer(SigningKey::load_or_create(signing_key, log_name)?, log_name);
    let state = AppState {
        db: db.clone(),
        writer,
        ingest_token: Arc::new(IngestToken::new(&serve.ingest_token)),
        signer,
        webhooks: webhooks::Settings {
            allow: Arc::new(settings.webhook_allow_cidrs.clone()),
            retry: serve.webhook_retry,
        },
        metrics,
        signing_key: vkey.as_str().into(),
        checkpoint_interval: serve.checkpoint_interval,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(run(state, writer_thread, &vkey, &serve));
    drop(runtime);
    served
}

/// Serves until SIGINT or SIGTERM, then finishes the requests in flight (and so their
/// commits) and stops the writer.
async fn run(
    state: AppState,
    writer_thread: std::thread::JoinHandle<()>,
    vkey: &str,
    serve: &ServeSettings,
) -> anyhow::Result<()> {
    let ticker = tokio::spawn(tick_every(state.writer.clone(), serve.checkpoint_interval));
    let deliveries = webhooks::spawn(
        state.db.clone(),
        state.webhooks.clone(),
        state.metrics.clone(),
    )?;
    let listener = TcpListener::bind(serve.listen)
        .await
        .with_context(|| format!("cannot listen on {}", serve.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        db = %state.db.describe(),
        max_body_bytes = serve.max_body_bytes,
        signing_key = %vkey,
        "acp-collector started"
    );
    axum::serve(listener, router(state, serve.max_body_bytes))
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
